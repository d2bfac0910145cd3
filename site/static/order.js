// gitvps order page: POST api/order, then on to Stripe Checkout. The form is never cleared on error.
"use strict";
(function () {
  var g = gitvps;
  var cat = g.json("gitvps-catalog");
  var form = document.getElementById("order-form");
  var msg = document.getElementById("order-message");
  var product = document.getElementById("order-product");
  var os = document.getElementById("order-os");
  var appliance = document.getElementById("order-appliance");
  var params = new URLSearchParams(location.search);
  if (params.get("product")) { product.value = params.get("product"); }
  if (params.get("location")) { document.getElementById("order-location").value = params.get("location"); }

  // Only the appliances that run on the chosen OS can be picked.
  function filterAppliances() {
    var o = (cat.os || []).filter(function (x) { return x.id === os.value; })[0];
    var ok = o ? o.appliances : [];
    Array.prototype.forEach.call(appliance.options, function (opt) {
      var fits = opt.value === "" || ok.indexOf(opt.value) >= 0;
      opt.disabled = !fits;
      opt.hidden = !fits;
    });
    if (appliance.selectedOptions[0] && appliance.selectedOptions[0].disabled) { appliance.value = ""; }
  }
  os.addEventListener("change", filterAppliances);
  filterAppliances();

  // A logged-in customer orders for itself.
  var known = null;
  if (g.token()) {
    g.call("GET", "me").then(function (r) {
      if (r.ok && r.body && r.body.customer) {
        known = r.body.customer;
        var p = document.getElementById("order-known");
        p.textContent = g.t("account_logged_in", { id: known.id, name: known.name });
        p.hidden = false;
        document.getElementById("order-new").hidden = true;
      }
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { product: product.value, location: document.getElementById("order-location").value, os: os.value };
    if (appliance.value) { body.appliance = appliance.value; }
    if (!known) {
      var fields = ["name", "email", "password"];
      for (var i = 0; i < fields.length; i++) {
        var input = document.getElementById("order-" + fields[i]);
        if (!input.checkValidity()) {
          input.focus();
          g.show(msg, input.validationMessage || g.t("err_bad_customer", { message: fields[i] }), "error");
          return;
        }
      }
      body.customer = { name: document.getElementById("order-name").value, email: document.getElementById("order-email").value,
                        password: document.getElementById("order-password").value, language: g.lang };
      var company = document.getElementById("order-company").value;
      if (company) { body.customer.company = company; }
    }
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    g.show(msg, g.t("working"));
    g.call("POST", "order", body).then(function (r) {
      button.disabled = false;
      if (r.ok && r.body && r.body.url) {
        g.show(msg, g.t("order_redirect"), "ok");
        location.assign(r.body.url);
      } else {
        g.show(msg, g.errorText(r), "error");
      }
    });
  });
})();
