#!/usr/bin/python3
"""A real SMTP server for gitvps's mail tests: aiosmtpd on 127.0.0.1, messages into a Maildir.

usage: smtpd.py --maildir DIR [--host IP] [--port N] [--starttls CERT KEY | --implicit-tls CERT KEY]
                [--auth USER:PASS] [--reject-rcpt ADDR]... [--defer-rcpt ADDR]... [--refuse]
                [--max N]

Prints the port it listens on (useful with --port 0, the default) on stdout, then serves until
killed or until its stdin closes. Each accepted message is stored as one Maildir file, its
envelope in a Return-Path and a Delivered-To header on top.
  --host           listen on this loopback address (default 127.0.0.1)
  --starttls       offer STARTTLS and require it before MAIL
  --implicit-tls   TLS from the first byte (smtps)
  --auth           require AUTH PLAIN/LOGIN with these credentials before MAIL
  --reject-rcpt    answer 550 to RCPT TO this address (repeatable)
  --defer-rcpt     answer 450 to RCPT TO this address (repeatable)
  --refuse         greet every connection with 554 and take nothing
  --max            exit right after accepting this many messages (a crash mid-delivery)
"""

import argparse
import asyncio
import logging
import mailbox
import os
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.maildir = mailbox.Maildir(args.maildir, create=True)
        self.reject = {a.lower() for a in args.reject_rcpt}
        self.defer = {a.lower() for a in args.defer_rcpt}
        self.max = args.max
        self.accepted = 0
        self.closing = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.closing:
            return "421 4.3.2 gitvps test server: shutting down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: no such user here"
        if address.lower() in self.defer:
            return f"450 4.2.1 <{address}>: mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.closing:
            return "421 4.3.2 gitvps test server: shutting down"
        head = (
            f"Return-Path: <{envelope.mail_from}>\r\n"
            f"Delivered-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        self.maildir.add(head + envelope.original_content)
        self.accepted += 1
        if self.max is not None and self.accepted >= self.max:
            # The 250 below still goes out; then the server is gone, as after a crash.
            self.closing = True
            asyncio.get_running_loop().call_later(0.05, os._exit, 0)
        return "250 2.0.0 OK: queued"


class Refuser(asyncio.Protocol):
    """A server that will not serve: 554 at the greeting, 503 to everything but QUIT."""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"554 5.3.2 gitvps test server: no SMTP service here\r\n")

    def data_received(self, data):
        for line in data.splitlines():
            if line.strip().upper() == b"QUIT":
                self.transport.write(b"221 2.0.0 Bye\r\n")
                self.transport.close()
                return
            self.transport.write(b"503 5.5.1 no SMTP service here\r\n")


def tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(args):
    loop = asyncio.get_running_loop()
    if args.refuse:
        server = await loop.create_server(Refuser, args.host, args.port)
    else:
        handler = Handler(args)
        kwargs = {"hostname": "smtpd.gitvps.test", "decode_data": False}
        implicit = None
        if args.starttls:
            kwargs["tls_context"] = tls_context(*args.starttls)
            kwargs["require_starttls"] = True
        if args.implicit_tls:
            implicit = tls_context(*args.implicit_tls)
        if args.auth:
            user, _, password = args.auth.partition(":")

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = (
                    isinstance(auth_data, LoginPassword)
                    and auth_data.login == user.encode()
                    and auth_data.password == password.encode()
                )
                return AuthResult(success=ok, handled=False)

            kwargs["authenticator"] = authenticator
            kwargs["auth_required"] = True
            # Under implicit TLS the whole connection is encrypted already.
            kwargs["auth_require_tls"] = implicit is None

        server = await loop.create_server(
            lambda: SMTP(handler, **kwargs), args.host, args.port, ssl=implicit
        )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    tls.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--auth", metavar="USER:PASS")
    parser.add_argument("--reject-rcpt", action="append", default=[], metavar="ADDR")
    parser.add_argument("--defer-rcpt", action="append", default=[], metavar="ADDR")
    parser.add_argument("--refuse", action="store_true")
    parser.add_argument("--max", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    # The test that started us holds our stdin: when it goes away, so do we.
    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
