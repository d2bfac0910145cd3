// gitvps site: shared helpers for every page. Plain JavaScript, no framework, no network but the hooks.
"use strict";
var gitvps = (function () {
  function meta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute("content") : "";
  }
  var root = meta("gitvps-root") || "./";
  var lang = meta("gitvps-lang") || "en";
  // The hooks are at <site root>/api/ unless the page says otherwise: relative, so any path prefix works.
  var api = meta("gitvps-api") || root + "api/";
  function json(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : {};
  }
  var strings = json("gitvps-strings");
  // A string with its {placeholders} filled.
  function t(key, vars) {
    var s = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
    return s.replace(/\{(\w+)\}/g, function (all, k) {
      return vars && vars[k] !== undefined && vars[k] !== null ? String(vars[k]) : all;
    });
  }
  var TOKEN = "gitvps-token";
  function token() { try { return sessionStorage.getItem(TOKEN); } catch (e) { return null; } }
  function setToken(v) {
    try { if (v) { sessionStorage.setItem(TOKEN, v); } else { sessionStorage.removeItem(TOKEN); } } catch (e) { /* private mode */ }
  }
  // Calls a hook. Resolves to {ok, status, body}; never rejects: a network failure is status 0.
  function call(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    var tk = token();
    if (tk) { headers["Authorization"] = "Bearer " + tk; }
    return fetch(api + path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.text().then(function (text) {
          var parsed = null;
          try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = null; }
          return { ok: r.ok, status: r.status, body: parsed };
        });
      }, function () { return { ok: false, status: 0, body: null }; });
  }
  // The words for a failed call.
  function errorText(res) {
    if (res.status === 0) { return t("err_network"); }
    var b = res.body || {};
    var code = b.error || "";
    if (code && Object.prototype.hasOwnProperty.call(strings, "err_" + code)) {
      return t("err_" + code, { message: b.message || "" });
    }
    if (!b.error && res.status >= 500) { return t("err_network"); }
    return t("err_generic", { message: b.message || ("HTTP " + res.status) });
  }
  function show(el, text, kind) {
    if (!el) { return; }
    el.className = "message" + (kind ? " " + kind : "");
    el.textContent = text;
  }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") { e.textContent = attrs[k]; } else if (k === "hidden") { e.hidden = !!attrs[k]; } else { e.setAttribute(k, attrs[k]); }
      });
    }
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) { e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } });
    return e;
  }
  // The same page in another language, relative to the site root.
  function langHref(other) {
    var link = document.querySelector("a.lang");
    return link && link.getAttribute("data-lang") === other ? link.getAttribute("href") : null;
  }
  var LANG = "gitvps-lang";
  function chosenLang() { try { return localStorage.getItem(LANG); } catch (e) { return null; } }
  function chooseLang(l) { try { localStorage.setItem(LANG, l); } catch (e) { /* private mode */ } }
  // Switch to `want` (a site language) unless the visitor picked one by hand.
  function follow(want) {
    if (!want || want === lang || chosenLang()) { return false; }
    var href = langHref(want);
    if (href) { location.replace(href + location.search); return true; }
    return false;
  }
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.lang") : null;
    if (a) { chooseLang(a.getAttribute("data-lang")); }
  });
  // First visit: the browser's language.
  var nav = (navigator.languages && navigator.languages[0]) || navigator.language || "";
  var redirected = /^zh\b/i.test(nav) ? follow("zh") : false;
  return { api: api, root: root, lang: lang, t: t, call: call, token: token, setToken: setToken,
           errorText: errorText, show: show, el: el, json: json, follow: follow, redirected: redirected };
})();
