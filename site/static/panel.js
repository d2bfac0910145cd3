// gitvps customer panel: login, the customer's VPSes and their actions, SSH keys, reverse DNS, tickets, invoices.
// Every action is one call to the hooks, which commit it; the next apply carries it out.
"use strict";
(function () {
  var g = gitvps, t = g.t, el = g.el;
  if (g.redirected) { return; }
  var cat = g.json("gitvps-catalog");
  var loginBox = document.getElementById("login");
  var account = document.getElementById("account");
  var notice = document.getElementById("panel-notice");
  var loginForm = document.getElementById("login-form");
  var loginMsg = document.getElementById("login-message");
  var state = { me: null, selected: null, messages: {}, tickets: [] };

  var params = new URLSearchParams(location.search);
  if (params.get("ordered")) { g.show(notice, t("ordered"), "ok"); }
  if (params.get("paid")) { g.show(notice, t("paid", { vps: params.get("paid") }), "ok"); }
  if (params.get("traffic")) { g.show(notice, t("traffic_paid", { vps: params.get("traffic") }), "ok"); }
  // Links in mails: `?invoice=INV-...` opens that invoice, `?vps=ID` shows that VPS and its renewal.
  var wanted = { invoice: params.get("invoice"), vps: params.get("vps") };

  function showLogin(message, kind) {
    hideInvoice();
    account.hidden = true;
    loginBox.hidden = false;
    if (message) { g.show(loginMsg, message, kind || "error"); }
  }
  // The account section (account.js) ends the session: log out everywhere, a revoked token.
  document.addEventListener("gitvps:logout", function (ev) {
    g.setToken(null);
    state.me = null;
    showLogin(ev.detail && ev.detail.message, ev.detail && ev.detail.kind);
  });

  loginForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var customer = document.getElementById("login-customer");
    var password = document.getElementById("login-password");
    if (!customer.value) { customer.focus(); g.show(loginMsg, t("err_bad_credentials"), "error"); return; }
    var button = document.getElementById("login-submit");
    button.disabled = true;
    g.show(loginMsg, t("working"));
    var otpField = document.getElementById("login-otp-field");
    var otp = document.getElementById("login-otp");
    var body = { customer: customer.value, password: password.value };
    if (!otpField.hidden && otp.value.trim()) { body.otp = otp.value.trim(); }
    g.call("POST", "login", body).then(function (r) {
      button.disabled = false;
      if (r.ok && r.body && r.body.token) {
        g.show(loginMsg, "");
        g.setToken(r.body.token);
        password.value = "";
        otp.value = "";
        otpField.hidden = true;
        load(true);
      } else if (r.body && r.body.error === "otp_required") {
        // The password was right: the second factor is asked for.
        otpField.hidden = false;
        g.show(loginMsg, g.errorText(r), "error");
        otp.focus();
      } else {
        g.show(loginMsg, g.errorText(r), "error");
        (otpField.hidden ? password : otp).focus();
      }
    });
  });

  document.getElementById("logout").addEventListener("click", function () {
    g.setToken(null);
    state.me = null;
    showLogin();
    document.getElementById("login-customer").focus();
  });

  // Loads the customer and its VPSes; `first` after a login (the language may follow the customer's).
  function load(first) {
    return g.call("GET", "me").then(function (r) {
      if (r.status === 401) { g.setToken(null); showLogin(first ? null : t("err_unauthorized")); return; }
      if (!r.ok || !r.body) { g.show(notice, g.errorText(r), "error"); if (!state.me) { showLogin(); } return; }
      if (first && g.follow(r.body.customer.language)) { return; }
      state.me = r.body;
      var ids = r.body.vps.map(function (v) { return v.id; });
      if (ids.indexOf(state.selected) < 0) { state.selected = ids.length ? ids[0] : null; }
      loginBox.hidden = true;
      account.hidden = false;
      render();
      loadTickets();
      loadInvoices();
      if (wanted.vps) { focusVps(wanted.vps); }
      if (wanted.invoice) { openInvoice(wanted.invoice); }
      wanted = {};
      document.dispatchEvent(new CustomEvent("gitvps:me", { detail: r.body }));
    });
  }

  function say(section, text, kind) { state.messages[section] = { text: text, kind: kind }; }
  function messageBox(section) {
    var m = state.messages[section];
    var box = el("div", { "class": "message" + (m && m.kind ? " " + m.kind : ""), role: "status", "aria-live": "polite",
                          tabindex: "-1", id: "msg-" + section, text: m ? m.text : "" });
    return box;
  }
  function focusMessage(section) {
    var m = document.getElementById("msg-" + section);
    if (m) { m.focus(); }
  }

  // The words for an accepted change.
  function accepted(res, what) {
    var b = res.body || {};
    if (b.changed === false) { return t("unchanged", { what: what }); }
    var s = t("accepted", { what: what });
    if (b.commit) { s += " " + t("accepted_commit", { commit: String(b.commit).slice(0, 12) }); }
    return s;
  }

  // Sends one change; on success reloads and shows the answer, on error keeps every input.
  function send(section, button, method, path, body, what, after) {
    button.disabled = true;
    var live = document.getElementById("msg-" + section);
    g.show(live, t("working"));
    g.call(method, path, body).then(function (r) {
      button.disabled = false;
      if (r.ok) {
        if (after) { after(r); return; }
        say(section, accepted(r, what), "ok");
        load(false).then(function () { focusMessage(section); });
      } else if (r.status === 401) {
        g.setToken(null);
        showLogin(t("err_unauthorized"));
      } else {
        g.show(live, g.errorText(r), "error");
        if (live) { live.focus(); }
      }
    });
  }

  // The name of a catalog entry, or its id when it is no longer offered.
  function nameOf(list, id) {
    var hit = (list || []).filter(function (x) { return x.id === id; })[0];
    return hit ? hit.name : id;
  }

  function dl(pairs) {
    var d = el("dl", { "class": "specs" });
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") { return; }
      d.appendChild(el("dt", { text: p[0] }));
      d.appendChild(el("dd", { text: String(p[1]) }));
    });
    return d;
  }

  function render() {
    var me = state.me;
    document.getElementById("who").textContent = t("logged_in_as", { name: me.customer.name, id: me.customer.id });
    var list = document.getElementById("vps-list");
    list.textContent = "";
    if (!me.vps.length) {
      list.appendChild(el("p", { text: t("no_vps") }));
    } else {
      var tbody = el("tbody");
      me.vps.forEach(function (v) {
        var b = el("button", { type: "button", "data-vps": v.id, "aria-pressed": v.id === state.selected ? "true" : "false",
                               text: t("manage", { vps: v.id }) });
        b.addEventListener("click", function () { state.selected = v.id; state.messages = {}; render(); focusDetail(); });
        tbody.appendChild(el("tr", { "data-vps": v.id }, [
          el("th", { scope: "row", text: v.id }), el("td", { text: v.hostname }), el("td", { text: v.product.name || v.product.id }),
          el("td", { text: t("state_" + v.state) }), el("td", { text: v.expires }), el("td", {}, [b])]));
      });
      list.appendChild(el("table", { "class": "data", id: "vps-table" }, [
        el("thead", {}, [el("tr", {}, [t("col_vps"), t("hostname"), t("product"), t("col_state"), t("col_expires"), ""].map(function (h) {
          return el("th", { scope: "col", text: h });
        }))]), tbody]));
    }
    var sel = document.getElementById("ticket-vps");
    while (sel.options.length > 1) { sel.remove(1); }
    me.vps.forEach(function (v) { sel.appendChild(el("option", { value: v.id, text: v.id + " · " + v.hostname })); });
    renderDetail();
  }

  function focusDetail() {
    var h = document.querySelector("#vps-detail h2");
    if (h) { h.setAttribute("tabindex", "-1"); h.focus(); }
  }

  function renderDetail() {
    var box = document.getElementById("vps-detail");
    box.textContent = "";
    var v = (state.me.vps || []).filter(function (x) { return x.id === state.selected; })[0];
    if (!v) { return; }
    var cur = state.me.currency;
    var panel = el("article", { "class": "vps-panel", id: "vps-" + v.id, "aria-labelledby": "vps-title" }, [
      el("h2", { id: "vps-title", text: v.id + " · " + v.hostname }),
      dl([[t("ips"), v.ips.join(", ")], [t("location"), v.location], [t("os"), nameOf(cat.os, v.os)],
          [t("appliance"), v.appliance ? nameOf(cat.appliances, v.appliance) : null]])]);

    // Contract and renewals.
    var renew = el("div", { "class": "renewals" });
    if (!v.renewals.length) { renew.appendChild(el("p", { text: t("no_renewals") })); }
    v.renewals.forEach(function (o) {
      var b = el("button", { type: "button", "class": "primary", "data-renew": o.product,
                             text: t("renew_pay", { price: o.price, currency: cur, months: o.period_months === 1 ? t("one_month") : t("months", { n: o.period_months }) }) });
      b.addEventListener("click", function () {
        send("contract", b, "POST", "vps/" + v.id + "/renew", { product: o.product }, "", function (r) {
          if (r.body && r.body.url) { location.assign(r.body.url); }
        });
      });
      renew.appendChild(el("p", {}, [el("span", { text: o.name + " " }), b]));
    });
    panel.appendChild(el("section", { id: "contract" }, [
      el("h3", { text: t("contract_title") }),
      dl([[t("product"), v.product.name || v.product.id], [t("first_registered"), v.created], [t("expires"), v.expires],
          [t("state"), t("state_" + v.state)]]),
      el("h4", { text: t("renew_title") }), renew, messageBox("contract")]));
    var traffic = trafficSection(v);
    if (traffic) { panel.appendChild(traffic); }

    // Live status.
    var s = v.status || { known: false };
    var statusBody;
    if (s.known) {
      var pending = Object.keys(s.pending || {}).filter(function (k) { return s.pending[k]; }).map(function (k) { return t("act_" + k); });
      statusBody = dl([[t("status_power"), t("power_" + s.power)], [t("desired_power"), t("power_" + v.power)],
                       [t("status_domain"), s.domain_state], [t("status_memory"), s.memory_mib + " MiB"], [t("status_vcpus"), s.vcpus],
                       [t("status_observed"), s.observed_at], [t("status_pending"), pending.join(", ")], [t("status_error"), s.last_error]]);
    } else {
      statusBody = el("div", {}, [el("p", { text: t("status_unknown") }), dl([[t("desired_power"), t("power_" + v.power)]])]);
    }
    panel.appendChild(el("section", { id: "status" }, [el("h3", { text: t("status_title") }), statusBody]));

    // Power and maintenance, each behind a confirmation.
    var confirmBox = el("div", { id: "confirm-slot" });
    var actions = el("p", { "class": "actions" });
    ["start", "stop", "reboot", "fsck"].forEach(function (a) {
      var b = el("button", { type: "button", "data-action": a, text: t("act_" + a) });
      b.addEventListener("click", function () {
        confirmAction(confirmBox, t("confirm_" + a, { vps: v.id }), b, function (yes) {
          send("actions", yes, "POST", "vps/" + v.id + "/" + a, undefined, t("what_" + a, { vps: v.id }));
        });
      });
      actions.appendChild(b);
    });
    panel.appendChild(el("section", { id: "actions" }, [el("h3", { text: t("actions_title") }), actions, confirmBox, messageBox("actions")]));

    panel.appendChild(reinstallSection(v));
    panel.appendChild(bootSection(v));
    panel.appendChild(rescueSection(v));
    panel.appendChild(restoreSection(v));
    panel.appendChild(snapshotsSection(v));
    panel.appendChild(sshSection(v));
    panel.appendChild(ptrSection(v));
    panel.appendChild(checksSection(v));
    panel.appendChild(graphsSection(v));
    box.appendChild(panel);
  }

  // Usage graphs: CPU, network, disk and this VPS among its node's VPSes, over a day, week,
  // month or year. The hooks draw each as SVG; shown as an image (data: URL), so nothing in it runs.
  function graphsSection(v) {
    var figs = el("div", { "class": "graphs", id: "graphs" });
    var msg = el("div", { "class": "message", role: "status", "aria-live": "polite", id: "msg-graphs" });
    var ranges = el("p", { "class": "actions", role: "group", "aria-label": t("graphs_range") });
    function load(range) {
      Array.prototype.forEach.call(ranges.children, function (b) {
        b.setAttribute("aria-pressed", b.getAttribute("data-range") === range ? "true" : "false");
      });
      figs.textContent = "";
      g.show(msg, "");
      ["cpu", "network", "disk", "compare"].forEach(function (m) {
        var img = el("img", { "class": "graph", "data-metric": m, "data-range": range, alt: t("graph_" + m + "_" + range) });
        figs.appendChild(el("figure", {}, [img]));
        var headers = { "Accept": "image/svg+xml" };
        var tk = g.token();
        if (tk) { headers["Authorization"] = "Bearer " + tk; }
        var path = "vps/" + encodeURIComponent(v.id) + "/graph?metric=" + m + "&range=" + range + "&lang=" + g.lang;
        fetch(g.api + path, { headers: headers }).then(function (r) {
          return r.text().then(function (text) { return { ok: r.ok, status: r.status, text: text }; });
        }, function () { return { ok: false, status: 0, text: "" }; }).then(function (r) {
          if (r.ok) {
            img.setAttribute("src", "data:image/svg+xml;charset=utf-8," + encodeURIComponent(r.text));
            return;
          }
          img.parentNode.hidden = true;
          var body = null;
          try { body = JSON.parse(r.text); } catch (e) { body = null; }
          g.show(msg, body && body.error === "graphs_unavailable" ? t("graphs_unavailable") : g.errorText({ status: r.status, body: body }), "error");
        });
      });
    }
    ["day", "week", "month", "year"].forEach(function (r) {
      var b = el("button", { type: "button", "data-range": r, "aria-pressed": "false", text: t("range_" + r) });
      b.addEventListener("click", function () { load(r); });
      ranges.appendChild(b);
    });
    load("day");
    return el("section", { id: "monitoring" }, [el("h3", { text: t("monitoring_title") }), el("p", { text: t("graphs_intro") }), ranges, msg, figs]);
  }

  // "Buy more traffic": the catalog's traffic blocks the VPS may buy for its current traffic
  // period, each a button to Stripe Checkout; nothing when the catalog has none (or the plan
  // is unmetered).
  function trafficSection(v) {
    var offers = v.traffic_blocks || [];
    if (!offers.length) { return null; }
    var list = el("div", { "class": "traffic-blocks" });
    offers.forEach(function (o) {
      var b = el("button", { type: "button", "class": "primary", "data-traffic": o.product,
                             text: t("traffic_buy", { size: o.size, price: o.price, currency: state.me.currency }) });
      b.addEventListener("click", function () {
        send("traffic", b, "POST", "vps/" + v.id + "/traffic", { product: o.product }, "", function (r) {
          if (r.body && r.body.url) { location.assign(r.body.url); }
        });
      });
      list.appendChild(el("p", {}, [el("span", { text: o.name + " " }), b]));
    });
    return el("section", { id: "traffic" }, [el("h3", { text: t("traffic_title") }),
      el("p", { text: t("traffic_lead", { from: offers[0].period_start, to: offers[0].period_end }) }), list, messageBox("traffic")]);
  }

  // The collector's view of a VPS (status branch `monitor/<vps>.json`): its service checks and
  // the counters of its last reading.
  function checksSection(v) {
    var m = v.monitor || { known: false };
    var sec = el("section", { id: "checks" }, [el("h3", { text: t("live_checks_title") })]);
    if (!m.known) { sec.appendChild(el("p", { text: t("live_checks_unknown") })); return sec; }
    if (!m.checks.length) {
      sec.appendChild(el("p", { text: t("live_checks_none") }));
    } else {
      var rows = m.checks.map(function (c) {
        var word = c.state === "up" && c.failures > 0 ? t("live_check_failing", { n: c.failures }) : t("live_check_" + c.state);
        return el("tr", { "data-check": c.kind, "class": "check-" + c.state }, [
          el("td", { text: c.name }), el("td", { text: word }), el("td", { text: c.since }), el("td", { text: c.detail || "" })]);
      });
      sec.appendChild(el("table", { "class": "checks" }, [
        el("thead", {}, [el("tr", {}, [t("live_col_check"), t("live_col_state"), t("live_col_since"), t("live_col_detail")].map(function (h) {
          return el("th", { scope: "col", text: h }); }))]),
        el("tbody", {}, rows)]));
    }
    var c = m.counters;
    if (c) {
      var mib = function (b) { return (b / 1048576).toFixed(1) + " MiB"; };
      sec.appendChild(dl([[t("live_cpu"), (c.cpu_ms / 1000).toFixed(1) + " s"], [t("live_net_rx"), mib(c.net_rx_bytes)],
                          [t("live_net_tx"), mib(c.net_tx_bytes)], [t("live_disk_read"), mib(c.disk_read_bytes)],
                          [t("live_disk_write"), mib(c.disk_write_bytes)], [t("live_read_at"), c.at]]));
    }
    sec.appendChild(el("p", { "class": "hint", text: t("live_collected", { at: m.collected_at }) }));
    return sec;
  }

  // An inline confirmation (no browser dialog): the question, "yes" and "cancel".
  function confirmAction(slot, question, origin, onYes) {
    slot.textContent = "";
    var yes = el("button", { type: "button", "class": "danger", id: "confirm-yes", text: t("confirm_yes") });
    var no = el("button", { type: "button", id: "confirm-no", text: t("confirm_no") });
    var box = el("div", { "class": "confirm", role: "alertdialog", "aria-labelledby": "confirm-q" }, [
      el("p", { id: "confirm-q", text: question }), yes, no]);
    no.addEventListener("click", function () { slot.textContent = ""; origin.focus(); });
    yes.addEventListener("click", function () { onYes(yes); });
    slot.appendChild(box);
    yes.focus();
  }

  // The OSes a VPS may be reinstalled with: cloud images only where its node installs them.
  function osOptions(select, selected, v) {
    (cat.os || []).filter(function (o) { return !o.cloud_image || v.cloud_image_install; }).forEach(function (o) {
      var opt = el("option", { value: o.id, text: o.name });
      if (o.id === selected) { opt.selected = true; }
      select.appendChild(opt);
    });
  }

  function reinstallSection(v) {
    var os = el("select", { id: "reinstall-os", name: "os" });
    osOptions(os, v.os, v);
    var app = el("select", { id: "reinstall-appliance", name: "appliance" });
    function fill() {
      var keep = app.value;
      app.textContent = "";
      app.appendChild(el("option", { value: "", text: t("appliance_none") }));
      var o = (cat.os || []).filter(function (x) { return x.id === os.value; })[0];
      (o ? o.appliances : []).forEach(function (id) {
        var a = (cat.appliances || []).filter(function (x) { return x.id === id; })[0];
        app.appendChild(el("option", { value: id, text: a ? a.name : id }));
      });
      app.value = keep;
      if (app.value !== keep) { app.value = ""; }
    }
    os.addEventListener("change", fill);
    fill();
    if (v.appliance) { app.value = v.appliance; }
    var ack = el("input", { type: "checkbox", id: "reinstall-ack" });
    var go = el("button", { type: "button", "class": "danger", id: "reinstall-go", text: t("reinstall_submit") });
    var slot = el("div");
    go.addEventListener("click", function () {
      var live = document.getElementById("msg-reinstall");
      if (!ack.checked) { g.show(live, t("reinstall_ack_needed"), "error"); ack.focus(); return; }
      var osName = os.options[os.selectedIndex] ? os.options[os.selectedIndex].text : os.value;
      confirmAction(slot, t("confirm_reinstall", { vps: v.id, os: osName }), go, function (yes) {
        var body = { os: os.value };
        if (app.value) { body.appliance = app.value; }
        send("reinstall", yes, "POST", "vps/" + v.id + "/reinstall", body, t("what_reinstall", { vps: v.id }));
      });
    });
    return el("section", { id: "reinstall" }, [
      el("h3", { text: t("reinstall_title") }),
      el("p", { "class": "warning", id: "reinstall-warning", text: t("reinstall_warning", { vps: v.id }) }),
      el("div", { "class": "field" }, [el("label", { "for": "reinstall-os", text: t("f_os") }), os]),
      el("div", { "class": "field" }, [el("label", { "for": "reinstall-appliance", text: t("f_appliance") }), app]),
      el("div", { "class": "field check" }, [ack, el("label", { "for": "reinstall-ack", text: t("reinstall_ack") })]),
      el("p", {}, [go]), slot, messageBox("reinstall")]);
  }

  // Rescue mode: boot the VPS into the node's rescue system (its disk attached, not mounted,
  // the customer's keys for root), and back to its own system. Offered where the node has one.
  function rescueSection(v) {
    var head = [el("h3", { text: t("rescue_title") })];
    if (!v.rescue_boot) {
      return el("section", { id: "rescue" }, head.concat([el("p", { id: "rescue-unsupported", text: t("rescue_unsupported", { vps: v.id }) })]));
    }
    var slot = el("div");
    var on = !!v.rescue;
    var b = el("button", { type: "button", id: on ? "rescue-leave" : "rescue-enter", text: t(on ? "rescue_leave" : "rescue_enter") });
    b.addEventListener("click", function () {
      confirmAction(slot, t(on ? "confirm_rescue_leave" : "confirm_rescue", { vps: v.id }), b, function (yes) {
        send("rescue", yes, on ? "DELETE" : "POST", "vps/" + v.id + "/rescue", undefined,
             t(on ? "what_rescue_leave" : "what_rescue", { vps: v.id }));
      });
    });
    head.push(el("p", { id: "rescue-lead", text: t(on ? "rescue_now" : "rescue_lead", { vps: v.id }) }));
    return el("section", { id: "rescue" }, head.concat([el("p", {}, [b]), slot, messageBox("rescue")]));
  }

  // Boot media: one of the operator's ISOs or the customer's own (URL and sha256) as the VPS's
  // CD-ROM, and "boot from disk" (eject). Offered only where the VPS's node boots ISOs.
  function bootSection(v) {
    var head = [el("h3", { text: t("boot_title") })];
    if (!v.iso_boot) {
      return el("section", { id: "boot" }, head.concat([el("p", { id: "boot-unsupported", text: t("boot_unsupported", { vps: v.id }) })]));
    }
    head.push(el("p", { id: "boot-lead", text: t("boot_lead") }));
    var slot = el("div");
    if (v.boot) {
      var isoName = v.boot.iso ? nameOf(state.me.isos, v.boot.iso) : v.boot.iso_url;
      var eject = el("button", { type: "button", id: "boot-eject", text: t("boot_eject") });
      eject.addEventListener("click", function () {
        confirmAction(slot, t("confirm_eject", { vps: v.id }), eject, function (yes) {
          send("boot", yes, "DELETE", "vps/" + v.id + "/boot", undefined, t("what_eject", { vps: v.id }));
        });
      });
      head.push(el("p", { id: "boot-current", text: t("boot_current", { iso: isoName, order: t("boot_order_" + v.boot.order) }) }));
      head.push(el("p", {}, [eject]));
    }
    var pick = el("select", { id: "boot-iso", name: "iso" });
    (state.me.isos || []).forEach(function (o) {
      pick.appendChild(el("option", { value: o.id, text: o.name + " \u00b7 " + o.size }));
    });
    pick.appendChild(el("option", { value: "", text: t("boot_own") }));
    var url = el("input", { type: "url", id: "boot-url", name: "iso_url", spellcheck: "false" });
    var sha = el("input", { type: "text", id: "boot-sha256", name: "iso_sha256", spellcheck: "false", maxlength: "64" });
    var own = el("div", { id: "boot-own" }, [
      el("div", { "class": "field" }, [el("label", { "for": "boot-url", text: t("f_iso_url") }), url]),
      el("div", { "class": "field" }, [el("label", { "for": "boot-sha256", text: t("f_iso_sha256") }), sha])]);
    function toggle() { own.hidden = pick.value !== ""; }
    pick.addEventListener("change", toggle);
    toggle();
    var order = el("select", { id: "boot-order", name: "order" });
    ["cd", "disk"].forEach(function (o) { order.appendChild(el("option", { value: o, text: t("boot_order_" + o) })); });
    var go = el("button", { type: "button", id: "boot-go", text: t("boot_submit") });
    go.addEventListener("click", function () {
      var body = { order: order.value };
      var label;
      if (pick.value) {
        body.iso = pick.value;
        label = pick.options[pick.selectedIndex].text;
      } else {
        body.iso_url = url.value.trim();
        body.iso_sha256 = sha.value.trim();
        label = body.iso_url;
      }
      confirmAction(slot, t("confirm_boot", { vps: v.id, iso: label }), go, function (yes) {
        send("boot", yes, "PUT", "vps/" + v.id + "/boot", body, t("what_boot", { vps: v.id }));
      });
    });
    return el("section", { id: "boot" }, head.concat([
      el("div", { "class": "field" }, [el("label", { "for": "boot-iso", text: t("f_iso") }), pick]),
      own,
      el("div", { "class": "field" }, [el("label", { "for": "boot-order", text: t("f_boot_order") }), order]),
      el("p", {}, [go]), slot, messageBox("boot")]));
  }

  // Restore a backup: this VPS's own, or one of another VPS of the customer's (restore into
  // this one). The lists are the ones the last backup run published with the status.
  function restoreSection(v) {
    var pick = el("select", { id: "restore-backup", name: "backup" });
    // This VPS's backups first, then the customer's other VPSes'; the newest first in each.
    var mine = [], others = [];
    (state.me.vps || []).forEach(function (o) {
      ((o.status && o.status.backups) || []).forEach(function (b) {
        (o.id === v.id ? mine : others).push({ vps: o.id, b: b });
      });
    });
    function newest(x, y) { return x.b.time < y.b.time ? 1 : x.b.time > y.b.time ? -1 : 0; }
    mine.sort(newest).concat(others.sort(newest)).forEach(function (e) {
      var label = e.b.time.replace("T", " ").replace(/:\d\dZ$/, " UTC") + " \u00b7 " + gib(e.b.size_bytes) + " \u00b7 " + e.b.short_id;
      if (e.vps !== v.id) { label = t("restore_of", { vps: e.vps }) + " \u00b7 " + label; }
      var opt = el("option", { value: e.b.short_id, text: label });
      opt.setAttribute("data-from", e.vps);
      pick.appendChild(opt);
    });
    if (!pick.options.length) {
      return el("section", { id: "restore" }, [el("h3", { text: t("restore_title") }),
        el("p", { id: "restore-none", text: t("restore_none") })]);
    }
    pick.selectedIndex = 0;
    var ack = el("input", { type: "checkbox", id: "restore-ack" });
    var go = el("button", { type: "button", "class": "danger", id: "restore-go", text: t("restore_submit") });
    var slot = el("div");
    go.addEventListener("click", function () {
      var live = document.getElementById("msg-restore");
      if (!ack.checked) { g.show(live, t("reinstall_ack_needed"), "error"); ack.focus(); return; }
      var opt = pick.options[pick.selectedIndex];
      confirmAction(slot, t("confirm_restore", { vps: v.id, backup: opt.text }), go, function (yes) {
        var body = { snapshot: opt.value };
        var from = opt.getAttribute("data-from");
        if (from !== v.id) { body.from = from; }
        send("restore", yes, "POST", "vps/" + v.id + "/restore", body, t("what_restore", { vps: v.id }));
      });
    });
    return el("section", { id: "restore" }, [
      el("h3", { text: t("restore_title") }),
      el("p", { "class": "warning", id: "restore-warning", text: t("restore_warning", { vps: v.id }) }),
      el("div", { "class": "field" }, [el("label", { "for": "restore-backup", text: t("f_backup") }), pick]),
      el("div", { "class": "field check" }, [ack, el("label", { "for": "restore-ack", text: t("reinstall_ack") })]),
      el("p", {}, [go]), slot, messageBox("restore")]);
  }

  // Snapshots of the disk: take one (up to the plan's limit), revert to one (the disk's later
  // changes are lost: the same explicit confirmation as a reinstall) or delete one.
  function snapshotsSection(v) {
    var s = v.snapshots || { limit: 0, list: [] };
    var head = el("h3", { text: t("snap_title") });
    if (!s.limit) {
      return el("section", { id: "snapshots" }, [head, el("p", { id: "snap-none", text: t("snap_none") })]);
    }
    var slot = el("div");
    var ack = el("input", { type: "checkbox", id: "snap-ack" });
    var list = el("ul", { id: "snap-list" });
    s.list.forEach(function (x) {
      var when = x.created.replace("T", " ").replace(/:\d\dZ$/, " UTC");
      var revert = el("button", { type: "button", "class": "danger", "data-snapshot": x.name, text: t("snap_revert") });
      var del = el("button", { type: "button", "data-snapshot": x.name, text: t("snap_delete") });
      revert.addEventListener("click", function () {
        var live = document.getElementById("msg-snapshots");
        if (!ack.checked) { g.show(live, t("reinstall_ack_needed"), "error"); ack.focus(); return; }
        confirmAction(slot, t("confirm_snap_revert", { vps: v.id, snapshot: x.name }), revert, function (yes) {
          send("snapshots", yes, "POST", "vps/" + v.id + "/revert", { name: x.name }, t("what_snap_revert", { vps: v.id }));
        });
      });
      del.addEventListener("click", function () {
        confirmAction(slot, t("confirm_snap_delete", { snapshot: x.name }), del, function (yes) {
          send("snapshots", yes, "POST", "vps/" + v.id + "/delete-snapshot", { name: x.name }, t("what_snap_delete", { snapshot: x.name }));
        });
      });
      list.appendChild(el("li", {}, [
        el("span", { text: x.name + " \u00b7 " + when + " \u00b7 " + t(x.taken ? "snap_taken" : "snap_pending") + " " }),
        revert, del]));
    });
    var parts = [head, el("p", { id: "snap-limit", text: t("snap_limit", { n: s.list.length, limit: s.limit }) }), list];
    if (s.list.length < s.limit) {
      var name = el("input", { type: "text", id: "snap-name", name: "name", maxlength: "32",
                               pattern: "[a-z][a-z0-9]*(-[a-z0-9]+)*", autocomplete: "off" });
      var take = el("button", { type: "button", id: "snap-take", text: t("snap_take") });
      take.addEventListener("click", function () {
        send("snapshots", take, "POST", "vps/" + v.id + "/snapshot", { name: name.value }, t("what_snap_take", { vps: v.id }));
      });
      parts.push(el("div", { "class": "field" }, [el("label", { "for": "snap-name", text: t("f_snap_name") }), name]), el("p", {}, [take]));
    }
    if (s.list.length) {
      parts.push(el("p", { "class": "warning", id: "snap-warning", text: t("snap_warning", { vps: v.id }) }),
        el("div", { "class": "field check" }, [ack, el("label", { "for": "snap-ack", text: t("snap_ack") })]));
    }
    parts.push(slot, messageBox("snapshots"));
    return el("section", { id: "snapshots" }, parts);
  }

  function gib(bytes) {
    return (bytes / 1073741824).toFixed(bytes < 10737418240 ? 1 : 0) + " GiB";
  }

  function sshSection(v) {
    var keys = el("textarea", { id: "ssh-keys", rows: "4", spellcheck: "false", "aria-describedby": "ssh-lead" });
    keys.value = (state.me.customer.ssh_keys || []).join("\n");
    var save = el("button", { type: "button", id: "ssh-save", text: t("ssh_save") });
    save.addEventListener("click", function () {
      var list = keys.value.split("\n").map(function (s) { return s.trim(); }).filter(function (s) { return s; });
      send("ssh", save, "PUT", "vps/" + v.id + "/ssh-keys", { keys: list }, t("what_ssh_keys", { n: list.length }));
    });
    var s = v.status || {};
    var c = s.known && cat.consoles ? cat.consoles[s.node] : null;
    var cmd = c ? el("div", {}, [el("p", { text: t("ssh_command", { vps: v.id }) }),
                                 el("pre", { "class": "cmd", id: "ssh-command", text: "ssh " + (c.port !== 22 ? "-p " + c.port + " " : "") + v.id + "@" + c.host })])
                : el("p", { id: "ssh-command-unknown", text: t("ssh_command_unknown") });
    return el("section", { id: "ssh" }, [
      el("h3", { text: t("ssh_title") }), cmd,
      el("p", { id: "ssh-lead", text: t("ssh_lead") }),
      el("div", { "class": "field" }, [el("label", { "for": "ssh-keys", text: t("ssh_keys") }), keys]),
      el("p", {}, [save]), messageBox("ssh")]);
  }

  // Reverse DNS: each address with its PTR name, and a field per address to change it (empty:
  // the host name again). Each save is one commit; the next DNS publish serves it.
  function ptrSection(v) {
    var addrs = v.addresses || [];
    var body = el("tbody");
    addrs.forEach(function (a, i) {
      var input = el("input", { type: "text", id: "ptr-" + i, "data-address": a.address, value: a.custom ? a.ptr : "",
                                placeholder: v.hostname, spellcheck: "false", autocomplete: "off", maxlength: "254",
                                "aria-label": t("ptr_input", { address: a.address }), "aria-describedby": "ptr-lead" });
      var save = el("button", { type: "button", "data-ptr": a.address, text: t("ptr_save"),
                                "aria-label": t("ptr_save_for", { address: a.address }) });
      save.addEventListener("click", function () {
        var name = input.value.trim();
        send("ptr", save, "PUT", "vps/" + v.id + "/ptr", { address: a.address, name: name || null },
             name ? t("what_ptr", { name: name, address: a.address }) : t("what_ptr_reset", { address: a.address }));
      });
      input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { ev.preventDefault(); save.click(); } });
      body.appendChild(el("tr", { "data-address": a.address }, [
        el("th", { scope: "row" }, [el("code", { text: a.address })]),
        el("td", { "class": "ptr-name", text: a.ptr + (a.custom ? "" : " " + t("ptr_default")) }),
        el("td", {}, [input, " ", save])]));
    });
    var table = addrs.length
      ? el("table", { "class": "data", id: "ptr-table" }, [
          el("thead", {}, [el("tr", {}, [t("ptr_address"), t("ptr_current"), t("ptr_new")].map(function (h) {
            return el("th", { scope: "col", text: h });
          }))]), body])
      : el("p", { text: t("ptr_none") });
    return el("section", { id: "ptr" }, [
      el("h3", { text: t("ptr_title") }), el("p", { id: "ptr-lead", text: t("ptr_lead") }), table, messageBox("ptr")]);
  }

  // Tickets: the list, a reply form for each, and the form for a new one.
  function loadTickets() {
    g.call("GET", "tickets").then(function (r) {
      var box = document.getElementById("ticket-list");
      box.textContent = "";
      if (!r.ok) { box.appendChild(el("p", { "class": "message error", text: g.errorText(r) })); return; }
      var tickets = (r.body && r.body.tickets) || [];
      if (!tickets.length) { box.appendChild(el("p", { text: t("tickets_none") })); }
      tickets.forEach(function (tk) {
        var art = el("article", { "class": "ticket", id: "ticket-" + tk.id }, [
          el("h3", { text: tk.id + " · " + tk.subject }),
          el("p", { "class": "hint", text: t("ticket_status") + ": " + tk.status + (tk.vps ? " · " + tk.vps : "") })]);
        (tk.messages || []).forEach(function (m) {
          art.appendChild(el("div", { "class": "msg" }, [el("strong", { text: m.author + " · " + m.at }), el("div", { text: m.body })]));
        });
        var area = el("textarea", { id: "reply-" + tk.id, rows: "3" });
        var b = el("button", { type: "button", text: t("ticket_reply") });
        var live = el("div", { "class": "message", role: "status", "aria-live": "polite" });
        b.addEventListener("click", function () {
          if (!area.value.trim()) { area.focus(); return; }
          b.disabled = true;
          g.call("POST", "tickets/" + tk.id, { message: area.value }).then(function (res) {
            b.disabled = false;
            if (res.ok) { loadTickets(); } else { g.show(live, g.errorText(res), "error"); }
          });
        });
        art.appendChild(el("div", { "class": "field" }, [el("label", { "for": "reply-" + tk.id, text: t("ticket_reply") }), area]));
        art.appendChild(el("p", {}, [b]));
        art.appendChild(live);
        box.appendChild(art);
      });
    });
  }

  var ticketForm = document.getElementById("ticket-form");
  ticketForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var live = ticketForm.querySelector(".message");
    var subject = document.getElementById("ticket-subject");
    var message = document.getElementById("ticket-message");
    if (!subject.value.trim()) { subject.focus(); return; }
    if (!message.value.trim()) { message.focus(); return; }
    var body = { subject: subject.value, message: message.value };
    var vps = document.getElementById("ticket-vps").value;
    if (vps) { body.vps = vps; }
    var button = ticketForm.querySelector("button[type=submit]");
    button.disabled = true;
    g.show(live, t("working"));
    g.call("POST", "tickets", body).then(function (r) {
      button.disabled = false;
      if (r.ok) {
        g.show(live, t("ticket_sent", { what: t("what_ticket", { id: r.body.ticket }), commit: String(r.body.commit || "").slice(0, 12) }), "ok");
        subject.value = "";
        message.value = "";
        loadTickets();
      } else {
        g.show(live, g.errorText(r), "error");
      }
    });
  });

  // The invoices: a list, and one at a time in the view above the account (printable alone).
  var invoiceView = document.getElementById("invoice-view");
  var invoiceDoc = document.getElementById("invoice-doc");

  function loadInvoices() {
    g.call("GET", "invoices").then(function (r) {
      var box = document.getElementById("invoice-list");
      box.textContent = "";
      if (!r.ok) { box.appendChild(el("p", { "class": "message error", text: g.errorText(r) })); return; }
      var list = ((r.body && r.body.invoices) || []).slice().reverse();
      if (!list.length) { box.appendChild(el("p", { text: t("invoices_none") })); return; }
      var tbody = el("tbody");
      list.forEach(function (inv) {
        var b = el("button", { type: "button", "data-invoice": inv.number, text: t("invoice_view", { number: inv.number }) });
        b.addEventListener("click", function () { openInvoice(inv.number); });
        tbody.appendChild(el("tr", { "data-invoice": inv.number }, [
          el("th", { scope: "row", text: inv.number }), el("td", { text: inv.issued }), el("td", { text: inv.vps || "" }),
          el("td", { text: inv.total + " " + inv.currency }),
          el("td", { text: inv.paid ? t("invoice_paid") : t("invoice_unpaid") }), el("td", {}, [b])]));
      });
      box.appendChild(el("table", { "class": "data", id: "invoice-table" }, [
        el("thead", {}, [el("tr", {}, [t("col_invoice"), t("col_issued"), t("col_vps"), t("col_total"), t("col_paid"), ""].map(function (h) {
          return el("th", { scope: "col", text: h });
        }))]), tbody]));
    });
  }

  // Shows the document the hooks rendered: parsed inertly, its markup in a shadow root with its
  // own style sheet (applied through the CSS object model, so the site's CSP stays strict).
  function showDocument(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("script, link, iframe, object, embed, base, meta").forEach(function (n) { n.remove(); });
    var css = Array.prototype.map.call(doc.querySelectorAll("style"), function (n) { return n.textContent; }).join("\n");
    doc.querySelectorAll("style").forEach(function (n) { n.remove(); });
    var root = invoiceDoc.shadowRoot || invoiceDoc.attachShadow({ mode: "open" });
    root.textContent = "";
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
    } catch (e) { /* an old browser: the document shows unstyled */ }
    Array.prototype.forEach.call(doc.body.childNodes, function (n) { root.appendChild(document.importNode(n, true)); });
  }

  function setQuery(name, value) {
    var q = new URLSearchParams(location.search);
    if (value) { q.set(name, value); } else { q.delete(name); }
    var s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : "") + location.hash);
  }

  function openInvoice(number) {
    var title = document.getElementById("invoice-view-title");
    g.show(notice, t("invoice_loading", { number: number }));
    g.call("GET", "invoices/" + encodeURIComponent(number) + "?lang=" + g.lang).then(function (r) {
      if (r.status === 401) { g.setToken(null); showLogin(t("err_unauthorized")); return; }
      if (!r.ok || !r.body || !r.body.html) {
        g.show(notice, r.status === 404 ? t("invoice_not_found", { number: number }) : g.errorText(r), "error");
        return;
      }
      g.show(notice, "");
      showDocument(r.body.html);
      title.textContent = t("invoice_title", { number: r.body.invoice.number });
      invoiceView.hidden = false;
      invoiceView.setAttribute("data-invoice", r.body.invoice.number);
      document.body.classList.add("invoice-open");
      setQuery("invoice", r.body.invoice.number);
      title.focus();
    });
  }

  function hideInvoice() {
    invoiceView.hidden = true;
    invoiceView.removeAttribute("data-invoice");
    document.body.classList.remove("invoice-open");
    if (invoiceDoc.shadowRoot) { invoiceDoc.shadowRoot.textContent = ""; }
  }

  function closeInvoice() {
    var number = invoiceView.getAttribute("data-invoice");
    hideInvoice();
    setQuery("invoice", null);
    var back = Array.prototype.filter.call(document.querySelectorAll("#invoice-list button"), function (b) {
      return b.getAttribute("data-invoice") === number;
    })[0];
    if (back) { back.focus(); }
  }

  document.getElementById("invoice-print").addEventListener("click", function () { window.print(); });
  document.getElementById("invoice-close").addEventListener("click", closeInvoice);

  // Shows one VPS: selected, its row and its renewal marked, the first renew button focused.
  function focusVps(id) {
    var v = (state.me.vps || []).filter(function (x) { return x.id === id; })[0];
    if (!v) { g.show(notice, t("vps_not_found", { vps: id }), "error"); return; }
    state.selected = id;
    render();
    Array.prototype.forEach.call(document.querySelectorAll("#vps-table tr"), function (tr) {
      if (tr.getAttribute("data-vps") === id) { tr.classList.add("highlight"); }
    });
    var contract = document.getElementById("contract");
    if (!contract) { return; }
    contract.classList.add("highlight");
    var renew = contract.querySelector("button[data-renew]");
    if (renew) { renew.classList.add("highlight"); }
    var target = renew || contract.querySelector("h3");
    if (!renew) { target.setAttribute("tabindex", "-1"); }
    target.focus();
    contract.scrollIntoView({ block: "center" });
  }

  // A reset link (`?reset=`) opens the new-password form of account.js instead.
  if (params.get("reset")) { loginBox.hidden = true; } else if (g.token()) { load(false); } else { showLogin(); }
})();
