// gitvps customer panel, the account: forgot password and the reset link on the login screen;
// once logged in, password change, two-factor login, API keys and "log out everywhere".
"use strict";
(function () {
  var g = gitvps, t = g.t, el = g.el;
  if (g.redirected) { return; }
  var me = null;

  // Ends the session in panel.js's login screen, with a message.
  function loggedOut(message, kind) {
    document.dispatchEvent(new CustomEvent("gitvps:logout", { detail: { message: message, kind: kind } }));
  }

  // One call of a form: the button disabled meanwhile, errors in words in `live`.
  function submit(button, live, method, path, body, done) {
    button.disabled = true;
    g.show(live, t("working"));
    return g.call(method, path, body).then(function (r) {
      button.disabled = false;
      if (r.ok) { done(r); return; }
      if (r.status === 401 && g.token()) { loggedOut(t("err_unauthorized")); return; }
      g.show(live, g.errorText(r), "error");
      if (live.focus) { live.focus(); }
    });
  }

  // ---- on the login screen: "forgot password" and the reset link ----------------------

  var forgotOpen = document.getElementById("forgot-open");
  var forgotForm = document.getElementById("forgot-form");
  forgotOpen.addEventListener("click", function () {
    forgotForm.hidden = !forgotForm.hidden;
    forgotOpen.setAttribute("aria-expanded", forgotForm.hidden ? "false" : "true");
    if (!forgotForm.hidden) {
      var who = document.getElementById("forgot-customer");
      if (!who.value) { who.value = document.getElementById("login-customer").value; }
      who.focus();
    }
  });
  forgotForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var who = document.getElementById("forgot-customer");
    var live = document.getElementById("forgot-message");
    if (!who.value.trim()) { who.focus(); return; }
    submit(document.getElementById("forgot-submit"), live, "POST", "password/forgot", { customer: who.value.trim() }, function () {
      g.show(live, t("forgot_sent"), "ok");
    });
  });

  // The token is taken from the address and the address cleaned, so it stays out of the history.
  var params = new URLSearchParams(location.search);
  var resetToken = params.get("reset");
  if (resetToken) {
    params.delete("reset");
    var rest = params.toString();
    try { history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "")); } catch (e) { /* old browser */ }
    document.getElementById("reset").hidden = false;
    document.getElementById("reset-password").focus();
  }
  document.getElementById("reset-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var pw = document.getElementById("reset-password");
    var again = document.getElementById("reset-confirm");
    var live = document.getElementById("reset-message");
    if (pw.value.length < 8) { g.show(live, t("err_bad_password", { message: t("f_password_hint") }), "error"); pw.focus(); return; }
    if (pw.value !== again.value) { g.show(live, t("err_password_mismatch"), "error"); again.focus(); return; }
    submit(document.getElementById("reset-submit"), live, "POST", "password/reset", { token: resetToken, password: pw.value }, function () {
      pw.value = "";
      again.value = "";
      resetToken = null;
      document.getElementById("reset").hidden = true;
      loggedOut(t("reset_done"), "ok");
      document.getElementById("login-customer").focus();
    });
  });

  // ---- logged in: the account section ----------------------------------------------

  // Drawn again for a new login or a changed two-factor state, not after every action (an
  // enrolment under way stays on screen).
  document.addEventListener("gitvps:me", function (ev) {
    var first = me === null || me.customer.id !== ev.detail.customer.id;
    var changed = !first && !!me.customer.two_factor !== !!ev.detail.customer.two_factor;
    me = ev.detail;
    if (first || changed) { renderTwoFactor(); }
    if (first) { loadKeys(); }
  });
  document.getElementById("logout").addEventListener("click", function () { me = null; });

  // Password change: this session gets the new token; every other one is logged out.
  var pwForm = document.getElementById("password-form");
  pwForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var current = document.getElementById("pw-current");
    var fresh = document.getElementById("pw-new");
    var again = document.getElementById("pw-confirm");
    var live = document.getElementById("msg-password");
    if (!current.value) { current.focus(); return; }
    if (fresh.value.length < 8) { g.show(live, t("err_bad_password", { message: t("f_password_hint") }), "error"); fresh.focus(); return; }
    if (fresh.value !== again.value) { g.show(live, t("err_password_mismatch"), "error"); again.focus(); return; }
    submit(document.getElementById("pw-submit"), live, "POST", "password", { current: current.value, "new": fresh.value }, function (r) {
      if (r.body && r.body.token) { g.setToken(r.body.token); }
      current.value = "";
      fresh.value = "";
      again.value = "";
      g.show(live, t("password_changed"), "ok");
      live.focus();
    });
  });

  // Two-factor login: on (turn off with a code) or off (set up with a QR code, confirm, codes).
  function renderTwoFactor() {
    var on = !!(me && me.customer.two_factor);
    document.getElementById("twofactor-state").textContent = t(on ? "twofactor_on" : "twofactor_off");
    var body = document.getElementById("twofactor-body");
    body.textContent = "";
    var live = document.getElementById("msg-twofactor");
    if (on) {
      var code = el("input", { id: "twofactor-off-code", autocomplete: "one-time-code", inputmode: "numeric" });
      var off = el("button", { type: "button", id: "twofactor-off", text: t("twofactor_disable") });
      off.addEventListener("click", function () {
        if (!code.value.trim()) { code.focus(); return; }
        submit(off, live, "POST", "2fa/disable", { code: code.value.trim() }, function () {
          me.customer.two_factor = false;
          renderTwoFactor();
          g.show(live, t("twofactor_disabled"), "ok");
        });
      });
      body.appendChild(el("div", { "class": "field narrow" }, [el("label", { "for": "twofactor-off-code", text: t("f_twofactor_disable_code") }), code]));
      body.appendChild(el("p", {}, [off]));
      return;
    }
    var start = el("button", { type: "button", id: "twofactor-start", text: t("twofactor_start") });
    start.addEventListener("click", function () {
      submit(start, live, "POST", "2fa/setup", undefined, function (r) {
        g.show(live, "");
        enrol(body, live, r.body);
      });
    });
    body.appendChild(el("p", {}, [start]));
  }

  // The QR code of the secret (an SVG the hooks drew, shown as an image), the key for typing,
  // and the code that proves the app has it.
  function enrol(body, live, setup) {
    body.textContent = "";
    body.appendChild(el("p", { text: t("twofactor_scan") }));
    if (setup.qr_svg) {
      var src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(setup.qr_svg);
      body.appendChild(el("img", { id: "twofactor-qr", "class": "qr", src: src, alt: t("twofactor_qr_alt"), width: "200", height: "200" }));
    }
    body.appendChild(el("p", {}, [el("span", { text: t("twofactor_key") + ": " }), el("code", { id: "twofactor-secret", text: setup.secret })]));
    var code = el("input", { id: "twofactor-code", autocomplete: "one-time-code", inputmode: "numeric", maxlength: "6" });
    var confirm = el("button", { type: "button", "class": "primary", id: "twofactor-confirm", text: t("twofactor_confirm") });
    confirm.addEventListener("click", function () {
      if (!code.value.trim()) { code.focus(); return; }
      submit(confirm, live, "POST", "2fa/enable", { setup: setup.setup, code: code.value.trim() }, function (r) {
        me.customer.two_factor = true;
        renderTwoFactor();
        g.show(live, t("twofactor_enabled"), "ok");
        showRecovery((r.body && r.body.recovery_codes) || []);
      });
    });
    body.appendChild(el("div", { "class": "field narrow" }, [el("label", { "for": "twofactor-code", text: t("f_twofactor_code") }), code]));
    body.appendChild(el("p", {}, [confirm]));
    code.focus();
  }

  // Recovery codes, shown once.
  function showRecovery(codes) {
    var body = document.getElementById("twofactor-body");
    var list = el("ul", { id: "recovery-codes", "class": "codes" });
    codes.forEach(function (c) { list.appendChild(el("li", {}, [el("code", { text: c })])); });
    body.appendChild(el("div", { "class": "confirm", id: "recovery" }, [
      el("h4", { text: t("recovery_title") }), el("p", { text: t("recovery_lead") }), list]));
  }

  // API keys: the list with a revoke button each, and the form of a new one (shown once).
  function loadKeys() {
    var box = document.getElementById("apikeys-list");
    g.call("GET", "keys").then(function (r) {
      box.textContent = "";
      if (!r.ok) { box.appendChild(el("p", { "class": "message error", text: g.errorText(r) })); return; }
      var keys = (r.body && r.body.keys) || [];
      if (!keys.length) { box.appendChild(el("p", { id: "apikeys-none", text: t("apikeys_none") })); return; }
      var tbody = el("tbody");
      keys.forEach(function (k) {
        var revoke = el("button", { type: "button", "class": "danger", "data-revoke": k.id, text: t("apikey_revoke", { id: k.id }) });
        revoke.addEventListener("click", function () {
          var live = document.getElementById("msg-apikeys");
          submit(revoke, live, "DELETE", "keys/" + k.id, undefined, function () {
            g.show(live, t("apikey_revoked", { id: k.id }), "ok");
            document.getElementById("apikey-shown").textContent = "";
            loadKeys();
          });
        });
        tbody.appendChild(el("tr", { "data-key": k.id }, [
          el("th", { scope: "row", text: k.name }), el("td", {}, [el("code", { text: k.id })]),
          el("td", { text: (k.scopes || []).join(", ") }), el("td", { text: day(k.created) }),
          el("td", { text: k.expires ? day(k.expires) : t("apikey_never") }), el("td", {}, [revoke])]));
      });
      box.appendChild(el("table", { "class": "data", id: "apikeys-table" }, [
        el("thead", {}, [el("tr", {}, [t("f_apikey_name"), t("col_apikey"), t("col_scopes"), t("col_created"), t("col_key_expires"), ""].map(function (h) {
          return el("th", { scope: "col", text: h });
        }))]), tbody]));
    });
  }

  // A Unix time as its UTC date.
  function day(unix) { return new Date(unix * 1000).toISOString().slice(0, 10); }

  var keyForm = document.getElementById("apikey-form");
  keyForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = document.getElementById("apikey-name");
    var live = document.getElementById("msg-apikeys");
    var shown = document.getElementById("apikey-shown");
    if (!name.value.trim()) { name.focus(); return; }
    var scopes = Array.prototype.filter.call(keyForm.querySelectorAll("input[name=scope]"), function (c) { return c.checked; })
      .map(function (c) { return c.value; });
    if (!scopes.length) { g.show(live, t("apikey_no_scope"), "error"); return; }
    var body = { name: name.value.trim(), scopes: scopes };
    var days = document.getElementById("apikey-expiry").value;
    if (days) { body.expires_in_days = Number(days); }
    shown.textContent = "";
    submit(document.getElementById("apikey-submit"), live, "POST", "keys", body, function (r) {
      g.show(live, "");
      name.value = "";
      shown.appendChild(el("div", { "class": "confirm" }, [el("p", { text: t("apikey_shown") }),
        el("pre", { "class": "cmd", id: "apikey-new", text: r.body.key })]));
      loadKeys();
    });
  });

  // Log out everywhere, behind a confirmation.
  var logoutAll = document.getElementById("logout-all");
  logoutAll.addEventListener("click", function () {
    var slot = document.getElementById("logout-all-confirm");
    slot.textContent = "";
    var yes = el("button", { type: "button", "class": "danger", id: "logout-all-yes", text: t("confirm_yes") });
    var no = el("button", { type: "button", id: "logout-all-no", text: t("confirm_no") });
    var live = el("div", { "class": "message", role: "status", "aria-live": "polite" });
    no.addEventListener("click", function () { slot.textContent = ""; logoutAll.focus(); });
    yes.addEventListener("click", function () {
      submit(yes, live, "POST", "logout-all", undefined, function () {
        slot.textContent = "";
        me = null;
        loggedOut(t("logged_out_all"), "ok");
      });
    });
    slot.appendChild(el("div", { "class": "confirm", role: "alertdialog", "aria-labelledby": "logout-all-q" }, [
      el("p", { id: "logout-all-q", text: t("confirm_logout_all") }), yes, no, live]));
    yes.focus();
  });
})();
