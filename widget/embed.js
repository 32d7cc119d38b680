/*! Bazaar chat widget v1 */
// Embed: <script src="https://HOST/widget/v1/embed.js" data-widget-key="pk_..." async></script>
// Optional: data-user-id + data-user-exp + data-user-signature (a visitor the site signed in; the
// site's server signs "widgetId|userId|exp"), or BazaarWidget.identify(userId, signature, exp).
// Everything lives in a shadow root on one host element, so the page's CSS cannot reach it and
// its CSS cannot reach the page. Untrusted text is only ever set with textContent.
(function () {
  "use strict";

  var VERSION = "1";
  var PREFIX = "[Bazaar widget] ";
  if (window.BazaarWidget && window.BazaarWidget.version) {
    console.warn(PREFIX + "embed.js is included twice; the second copy does nothing.");
    return;
  }
  var script = document.currentScript || document.querySelector("script[data-widget-key]");
  if (!script) return;
  var widgetKey = (script.getAttribute("data-widget-key") || "").trim();
  if (!widgetKey) {
    console.warn(PREFIX + "the script tag has no data-widget-key; the chat widget is off.");
    return;
  }
  var base = new URL(script.src || "/", location.href).origin;

  var FLUSH_MS = 4000; // beacon batching interval
  var BATCH_MAX = 50;
  var QUEUE_MAX = 500;
  var BOOT_RETRIES = 5;
  var BOOT_RETRIES_UNREADABLE = 2;
  var REFUSED = { 403: true, 404: true, 410: true }; // the session will never be granted
  var VISITOR_KEY = "bazaar-widget:visitor:" + widgetKey;
  // Beacons a hidden page could not send with a valid token, for this tab's next page view.
  var UNSENT_KEY = "bazaar-widget:unsent:" + widgetKey;
  var EXPIRY_MARGIN_MS = 5000; // a token this close to its expiry is not handed to sendBeacon

  var state = {
    identity: identityFrom(
      script.getAttribute("data-user-id"),
      script.getAttribute("data-user-signature"),
      script.getAttribute("data-user-exp")
    ),
    session: null, // {token, widgetId, appearance, quota, refreshAt, usableUntil}
    pending: null, // the session request in flight
    generation: 0, // a newer session request supersedes older ones (identify during boot)
    refused: false,
    conversationId: null,
    busy: false,
    exhausted: false, // this month's messages are used up: the panel says so, the input is off
    quotaNoticeShown: false,
    open: false,
    wantOpen: false,
  };
  var ui = null;

  // ---- small helpers ------------------------------------------------------------------------

  var memoryStore = {};
  function load(key) {
    try {
      return window.localStorage.getItem(key) || memoryStore[key] || null;
    } catch (e) {
      return memoryStore[key] || null; // storage blocked (sandboxed iframe, privacy settings)
    }
  }
  function save(key, value) {
    memoryStore[key] = value;
    try {
      window.localStorage.setItem(key, value);
    } catch (e) {
      /* memory only */
    }
  }

  function uuid() {
    var c = window.crypto;
    if (c.randomUUID) return c.randomUUID(); // secure contexts only
    var b = c.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  /** The site's signed-in user, or null. ``exp`` is the Unix time (seconds) the signature covers. */
  function identityFrom(userId, signature, exp) {
    if (!userId || !signature) return null;
    var expires = Number(exp);
    if (!(expires > 0) || Math.floor(expires) !== expires) {
      console.warn(PREFIX + "an identity needs its exp (Unix seconds, as signed by your server); the visitor stays anonymous.");
      return null;
    }
    return { userId: String(userId), exp: expires, signature: String(signature) };
  }

  /** Tells the site that its signature expired, so it can sign a new one and call identify(). */
  function identityExpired() {
    var detail = { userId: state.identity && state.identity.userId };
    try {
      window.dispatchEvent(new CustomEvent("bazaar-widget:identity-expired", { detail: detail }));
    } catch (e) {
      /* a page without CustomEvent: the console warning still says it */
    }
  }

  function HttpError(status, body, headers) {
    var error = (body && body.error) || {};
    this.status = status;
    this.code = error.code || "http_" + status;
    this.message = error.message || "";
    // Retry-After is only readable when the server exposes it to CORS; details carry it too.
    this.retryAfter = Number(headers && headers.get("Retry-After")) || Number((error.details || {}).retryAfter) || 0;
  }

  function readJson(response) {
    return response.json().catch(function () { return {}; });
  }

  function post(path, body, headers) {
    return fetch(base + path, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: Object.assign({ "Content-Type": "application/json" }, headers),
      body: JSON.stringify(body),
    });
  }

  // ---- session -------------------------------------------------------------------------------

  function requestSession() {
    var body = { widgetKey: widgetKey };
    var visitorId = load(VISITOR_KEY);
    if (visitorId) body.visitorId = visitorId;
    if (state.identity) body.identity = state.identity;
    return post("/widget/v1/session", body).then(function (response) {
      return readJson(response).then(function (data) {
        if (!response.ok) {
          var error = new HttpError(response.status, data, response.headers);
          if (error.code === "identity_expired") identityExpired();
          throw error;
        }
        if (data.visitorId) save(VISITOR_KEY, data.visitorId);
        // The lifetime as the server counts it (expiresIn), so a clock that disagrees with the
        // server's does not matter; refresh at 90% of it. A 401 also forces a refresh.
        var lifetime = data.expiresIn > 0 ? data.expiresIn * 1000 : Date.parse(data.expiresAt) - Date.now();
        if (!(lifetime > 0)) lifetime = 60000;
        var now = Date.now();
        return {
          token: data.token,
          widgetId: data.widgetId,
          appearance: data.appearance || {},
          quota: data.quota || null, // {limit, used, remaining}; remaining null: no limit
          refreshAt: now + lifetime * 0.9,
          usableUntil: now + lifetime - Math.min(EXPIRY_MARGIN_MS, lifetime / 10),
        };
      });
    });
  }

  /** The current session, asking for a new one when it is about to expire (or when forced). */
  function ensureSession(force) {
    if (!force) {
      if (state.pending) return state.pending;
      if (state.session && Date.now() < state.session.refreshAt) return Promise.resolve(state.session);
    }
    var generation = ++state.generation;
    var request = requestSession().then(function (session) {
      if (generation !== state.generation) return state.pending || state.session; // superseded
      state.session = session;
      setExhausted(!!session.quota && session.quota.remaining === 0); // a new month opens it again
      return session;
    });
    state.pending = request;
    var settle = function () {
      if (state.pending === request) state.pending = null;
    };
    request.then(settle, settle);
    return request;
  }

  /** The next call asks for a new session (the token stays usable by sendBeacon meanwhile). */
  function renewSoon() {
    if (state.session) state.session.refreshAt = 0;
  }

  function refusal(error) {
    if (!error.status) {
      // The server answers refusals it cannot attribute to an allowed site (unknown key, other
      // origin) without CORS headers, so the browser shows us nothing but a failed fetch.
      return (
        "the chat widget is off: " + base + " could not be reached or refused this page (" + location.origin +
        "). Check data-widget-key and that this origin is one of the widget's allowed origins."
      );
    }
    return "the chat widget is off for this page (" + error.code + ")" + (error.message ? ": " + error.message : ".");
  }

  function boot(attempt) {
    ensureSession().then(
      function (session) {
        whenBodyReady(function () {
          buildUi(session.appearance);
          track("impression");
          if (state.wantOpen) openPanel();
        });
      },
      function (error) {
        // A readable 403/404/410 is final; an unreadable answer is retried a little, an
        // overloaded or failing server a little longer.
        var retries = error.status ? BOOT_RETRIES : BOOT_RETRIES_UNREADABLE;
        if (!REFUSED[error.status] && attempt < retries) {
          var delay = Math.max(error.retryAfter * 1000 || 0, 1000 * Math.pow(2, attempt));
          setTimeout(boot, delay, attempt + 1);
          return;
        }
        state.refused = true;
        console.warn(PREFIX + refusal(error));
      }
    );
  }

  function whenBodyReady(callback) {
    if (document.body) callback();
    else document.addEventListener("DOMContentLoaded", callback, { once: true });
  }

  // ---- usage beacons ---------------------------------------------------------------------------

  var queue = [];
  var flushTimer = 0;
  var flushing = false;
  var flushDelay = FLUSH_MS;

  function track(kind, extra) {
    queue.push(Object.assign({ eventId: uuid(), kind: kind, occurredAt: new Date().toISOString() }, extra));
    if (queue.length > QUEUE_MAX) queue.splice(0, queue.length - QUEUE_MAX);
    // A token past its refresh time is renewed now, not at the next batch: the page may be
    // hidden before then, and sendBeacon must not carry an expired token.
    if (state.session && !state.refused && Date.now() >= state.session.refreshAt) ensureSession().then(null, noop);
    scheduleFlush();
  }

  function noop() {}

  function tokenUsable(session) {
    return !!session && Date.now() < session.usableUntil;
  }

  /** Keeps the queue for this tab's next page view (sessionStorage: this tab, this site only). */
  function stashUnsent() {
    try {
      window.sessionStorage.setItem(UNSENT_KEY, JSON.stringify(queue.slice(-QUEUE_MAX)));
    } catch (e) {
      /* storage blocked or full: the events are lost with the page */
    }
  }

  function clearUnsent() {
    try {
      window.sessionStorage.removeItem(UNSENT_KEY);
    } catch (e) {
      /* nothing was stashed */
    }
  }

  /** The events an earlier page view of this tab could not send, back in the queue. */
  function restoreUnsent() {
    var events;
    try {
      events = JSON.parse(window.sessionStorage.getItem(UNSENT_KEY) || "null");
      window.sessionStorage.removeItem(UNSENT_KEY); // stashed again if this page cannot send them
    } catch (e) {
      return;
    }
    if (!Array.isArray(events)) return;
    events.forEach(function (event) {
      if (event && typeof event.eventId === "string" && typeof event.kind === "string") queue.push(event);
    });
    if (queue.length > QUEUE_MAX) queue.splice(0, queue.length - QUEUE_MAX);
    scheduleFlush();
  }

  function scheduleFlush() {
    if (!flushTimer && queue.length) flushTimer = setTimeout(flush, flushDelay);
  }

  function trackUrl(session) {
    return base + "/api/widgets/" + encodeURIComponent(session.widgetId) + "/track-usage";
  }

  // text/plain keeps the request "simple" (no CORS preflight), which sendBeacon needs; the body
  // is JSON all the same.
  function beaconBody(session, events) {
    return JSON.stringify({ token: session.token, events: events });
  }

  function flush() {
    flushTimer = 0;
    if (flushing || !queue.length) return;
    flushing = true;
    var batch = queue.splice(0, BATCH_MAX);
    var retry = function () {
      queue.unshift.apply(queue, batch); // the server deduplicates on eventId
      flushDelay = Math.min(flushDelay * 2, 60000);
    };
    ensureSession()
      .then(function (session) {
        return fetch(trackUrl(session), {
          method: "POST",
          mode: "cors",
          credentials: "omit",
          keepalive: true,
          headers: { "Content-Type": "text/plain;charset=UTF-8" },
          body: beaconBody(session, batch),
        });
      })
      .then(
        function (response) {
          if (response.status === 401) renewSoon();
          if (response.status === 401 || response.status === 429 || response.status >= 500) retry();
          else {
            flushDelay = FLUSH_MS; // accepted, or a 4xx that no retry would change
            if (!queue.length) clearUnsent(); // whatever a hidden page stashed has left now
          }
        },
        function (error) {
          if (REFUSED[error.status]) return; // the widget went away: nothing will be accepted
          if (!error.status) renewSoon(); // maybe a refusal the browser hid from us
          retry();
        }
      )
      .then(function () {
        flushing = false;
        scheduleFlush();
      });
  }

  /** The page is being hidden or unloaded: hand every queued event to sendBeacon, with a token
   * that is still valid. There is no time to renew one now (the page may be gone before the
   * answer), so when the token has expired the events are stashed in sessionStorage for the
   * next page view of this tab, and a renewal starts in case the page comes back (a tab switch,
   * the back-forward cache), where the next batch sends them. The warehouse counts an eventId
   * once, so an event sent twice is harmless; one sent with an expired token would be lost. */
  function flushOnHide() {
    if (!queue.length) return;
    var session = state.session;
    if (!tokenUsable(session) || !navigator.sendBeacon) {
      stashUnsent();
      if (session && !state.refused && !state.pending) ensureSession(true).then(null, noop);
      return;
    }
    while (queue.length) {
      var batch = queue.slice(0, BATCH_MAX);
      var blob = new Blob([beaconBody(session, batch)], { type: "text/plain;charset=UTF-8" });
      if (!navigator.sendBeacon(trackUrl(session), blob)) {
        stashUnsent(); // over the browser's quota: flush() later, or the next page view
        return;
      }
      queue.splice(0, batch.length);
    }
    clearUnsent();
  }

  window.addEventListener("pagehide", flushOnHide);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flushOnHide();
  });

  // ---- user interface ------------------------------------------------------------------------

  var STYLES =
    ":host{all:initial}" +
    "*{box-sizing:border-box}" +
    ".root{--bz-primary:#4f46e5;--bz-text:#fff;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328}" +
    "button,textarea{font:inherit;margin:0}" +
    "button{cursor:pointer}" +
    ":focus-visible{outline:3px solid #1a73e8;outline-offset:2px}" +
    ".launcher{position:fixed;bottom:20px;right:20px;display:flex;align-items:center;gap:8px;min-height:52px;min-width:52px;" +
    "justify-content:center;padding:0 16px;border:0;border-radius:26px;background:var(--bz-primary);color:var(--bz-text);" +
    "font-weight:600;box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".launcher svg{width:22px;height:22px;flex:none}" +
    ".label:empty{display:none}" +
    ".panel{position:fixed;bottom:84px;right:20px;width:370px;max-width:calc(100vw - 40px);height:560px;" +
    "max-height:calc(100vh - 110px);display:flex;flex-direction:column;background:#fff;border-radius:14px;" +
    "box-shadow:0 12px 40px rgba(0,0,0,.28);overflow:hidden}" +
    ".left .launcher,.left .panel{right:auto;left:20px}" +
    "[hidden]{display:none!important}" +
    "header{display:flex;align-items:center;gap:10px;padding:12px 12px 12px 16px;background:var(--bz-primary);color:var(--bz-text)}" +
    "header img{width:32px;height:32px;border-radius:50%;object-fit:cover;flex:none}" +
    "h2{flex:1;margin:0;font-size:16px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}" +
    ".close{width:36px;height:36px;border:0;border-radius:8px;background:transparent;color:inherit;font-size:22px;line-height:1}" +
    ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:8px;background:#f6f7f9}" +
    ".msg{max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".bot{align-self:flex-start;background:#fff;color:#1f2328;border:1px solid #e1e4e8}" +
    ".user{align-self:flex-end;background:var(--bz-primary);color:var(--bz-text)}" +
    ".notice{align-self:stretch;max-width:none;background:#fff8e6;color:#5c3b00;border:1px solid #f5d48a}" +
    ".typing:empty::after{content:'\\2026';letter-spacing:2px}" +
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e1e4e8;background:#fff}" +
    "textarea{flex:1;resize:none;height:40px;max-height:120px;padding:9px 10px;border:1px solid #c4c9d0;border-radius:8px;" +
    "color:#1f2328;background:#fff}" +
    ".send{padding:0 14px;border:0;border-radius:8px;background:var(--bz-primary);color:var(--bz-text);font-weight:600}" +
    ".send:disabled{opacity:.55;cursor:default}" +
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    "@media (max-width:480px){.panel,.left .panel{top:0;right:0;bottom:0;left:0;width:auto;height:auto;max-width:none;" +
    "max-height:none;border-radius:0}}" +
    "@media (prefers-reduced-motion:no-preference){.panel{animation:bz-in .16s ease-out}}" +
    "@keyframes bz-in{from{opacity:0;transform:translateY(8px)}}";

  // Static markup only: nothing from the server or the page is ever put through innerHTML.
  var MARKUP =
    '<div class="root">' +
    '<div class="panel" id="panel" role="dialog" hidden>' +
    '<header><img alt="" hidden><h2></h2>' +
    '<button class="close" type="button" aria-label="Close chat">&times;</button></header>' +
    '<div class="log" role="log" aria-live="polite" aria-label="Conversation" tabindex="0"></div>' +
    '<form><label class="sr" for="input">Your message</label>' +
    '<textarea id="input" rows="1" maxlength="4000" placeholder="Type your message…"></textarea>' +
    '<button class="send" type="submit">Send</button></form>' +
    "</div>" +
    '<button class="launcher" type="button" aria-expanded="false" aria-controls="panel" aria-haspopup="dialog">' +
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor" d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/></svg>' +
    '<span class="label"></span></button>' +
    "</div>";

  function isColor(value) {
    return typeof value === "string" && !!window.CSS && CSS.supports("color", value);
  }

  function safeImageUrl(value) {
    try {
      var url = new URL(value, base);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : "";
    } catch (e) {
      return "";
    }
  }

  function buildUi(appearance) {
    if (ui) return;
    var host = document.createElement("bazaar-chat-widget");
    // Inline !important beats any stylesheet rule of the page, even `* {display: none !important}`.
    host.style.cssText =
      "all:initial!important;display:block!important;position:fixed!important;top:0!important;" +
      "left:0!important;width:0!important;height:0!important;overflow:visible!important;" +
      "z-index:2147483000!important;visibility:visible!important;opacity:1!important";
    var shadow = host.attachShadow({ mode: "open" });
    var style = document.createElement("style");
    style.textContent = STYLES;
    shadow.appendChild(style);
    var template = document.createElement("template");
    template.innerHTML = MARKUP;
    shadow.appendChild(template.content);
    var q = function (selector) { return shadow.querySelector(selector); };
    ui = {
      host: host,
      shadow: shadow,
      root: q(".root"),
      launcher: q(".launcher"),
      label: q(".label"),
      panel: q(".panel"),
      avatar: q("header img"),
      title: q("h2"),
      close: q(".close"),
      log: q(".log"),
      form: q("form"),
      input: q("textarea"),
      send: q(".send"),
    };
    applyAppearance(appearance);

    ui.launcher.addEventListener("click", function () {
      if (state.open) closePanel();
      else openPanel();
    });
    ui.close.addEventListener("click", closePanel);
    ui.root.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && state.open) {
        event.stopPropagation();
        closePanel();
      }
    });
    ui.form.addEventListener("submit", function (event) {
      event.preventDefault();
      sendMessage();
    });
    ui.input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        sendMessage();
      }
    });
    ui.input.addEventListener("input", function () {
      ui.input.style.height = "auto";
      ui.input.style.height = Math.min(ui.input.scrollHeight + 2, 120) + "px";
    });

    setExhausted(state.exhausted);
    document.body.appendChild(host);
    // Pages that swap <body> (Turbo, some routers) would drop the widget: put it back.
    new MutationObserver(function () {
      if (!host.isConnected && document.body) document.body.appendChild(host);
    }).observe(document.documentElement, { childList: true });
  }

  function applyAppearance(appearance) {
    var a = appearance || {};
    var title = a.title || "Chat";
    if (isColor(a.primaryColor)) ui.root.style.setProperty("--bz-primary", a.primaryColor);
    if (isColor(a.textColor)) ui.root.style.setProperty("--bz-text", a.textColor);
    ui.root.classList.toggle("left", a.position === "bottom-left");
    ui.title.textContent = title;
    ui.panel.setAttribute("aria-label", title);
    ui.label.textContent = a.launcherText || "";
    ui.launcher.setAttribute("aria-label", a.launcherText || "Open chat: " + title);
    var avatar = safeImageUrl(a.avatarUrl || "");
    if (avatar) {
      ui.avatar.addEventListener("error", function () { ui.avatar.hidden = true; });
      ui.avatar.src = avatar;
      ui.avatar.hidden = false;
    }
    if (a.greeting) addBubble("bot", a.greeting);
  }

  function openPanel() {
    if (!ui) {
      state.wantOpen = true; // opened before the session arrived
      return;
    }
    if (!state.open) {
      state.open = true;
      ui.panel.hidden = false;
      ui.launcher.setAttribute("aria-expanded", "true");
      ui.log.scrollTop = ui.log.scrollHeight;
      track("open");
    }
    if (state.exhausted) showQuotaNotice();
    (state.exhausted ? ui.close : ui.input).focus();
  }

  var QUOTA_NOTICE = "This assistant has answered all the messages it can this month. Please come back later.";

  /** Whether this month's messages are used up: the input is off until a session says otherwise. */
  function setExhausted(exhausted) {
    if (!exhausted) state.quotaNoticeShown = false;
    state.exhausted = exhausted;
    if (!ui) return;
    ui.input.disabled = exhausted;
    ui.send.disabled = exhausted || state.busy;
    if (exhausted && state.open) showQuotaNotice();
  }

  /** Once per exhaustion, before the visitor types a message that could only be refused. */
  function showQuotaNotice() {
    if (state.quotaNoticeShown) return;
    state.quotaNoticeShown = true;
    addBubble("notice", QUOTA_NOTICE);
  }

  function closePanel() {
    state.wantOpen = false;
    if (!ui || !state.open) return;
    var hadFocus = ui.shadow.activeElement !== null;
    state.open = false;
    ui.panel.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "false");
    if (hadFocus) ui.launcher.focus();
  }

  function addBubble(kind, text) {
    var bubble = document.createElement("div");
    bubble.className = "msg " + kind;
    bubble.textContent = text;
    appendToLog(bubble);
    return bubble;
  }

  function appendToLog(node) {
    var log = ui.log;
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    if (node) log.appendChild(node);
    if (atBottom || node) log.scrollTop = log.scrollHeight;
  }

  function showNotice(bubble, text) {
    bubble.className = "msg notice";
    bubble.textContent = text;
    appendToLog(null);
  }

  // ---- chat ----------------------------------------------------------------------------------

  var WIDGET_GONE = { widget_not_found: 1, widget_unavailable: 1, origin_not_allowed: 1, origin_required: 1 };

  function politeMessage(error) {
    if (error.code === "quota_exceeded") return error.message || "This assistant has reached its message limit for now.";
    if (error.status === 429) {
      return error.retryAfter
        ? "You are sending messages a little fast. Please try again in " + Math.ceil(error.retryAfter) + " seconds."
        : "You are sending messages a little fast. Please wait a moment and try again.";
    }
    if (error.status === 404 && !WIDGET_GONE[error.code]) {
      return "This conversation has expired. Please send your message again to start a new one.";
    }
    if (error.code === "identity_expired") return "Your sign-in to this site has expired. Please reload the page to go on chatting.";
    if (REFUSED[error.status]) return "Sorry, this chat is not available right now.";
    if (error.status >= 400 && error.status < 500) return "That message could not be sent. Please shorten or rephrase it.";
    if (error.status) return "Something went wrong on our side. Please try again in a moment.";
    return "We could not reach the assistant. Please check your connection and try again.";
  }

  function postChat(text, isRetry) {
    return ensureSession().then(function (session) {
      var body = { message: text };
      if (state.conversationId) body.conversationId = state.conversationId;
      return post("/widget/v1/chat", body, {
        Accept: "text/event-stream",
        Authorization: "Bearer " + session.token,
      }).then(function (response) {
        if (response.status === 401 && !isRetry) {
          renewSoon(); // expired or revoked: one fresh session, one more try
          return postChat(text, true);
        }
        return response;
      }, function (error) {
        if (isRetry) throw error;
        // A refusal without CORS headers (a token the server cannot read) looks like a network
        // error: one more try with a new session, which fails fast if the network is down.
        return ensureSession(true).then(function () {
          return postChat(text, true);
        });
      });
    });
  }

  /** Calls ``onEvent(name, data)`` for every Server-Sent Event of the response body. */
  function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function dispatch(block) {
      var name = "message";
      var data = [];
      block.split("\n").forEach(function (line) {
        var colon = line.indexOf(":");
        if (!line || colon === 0) return;
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      });
      if (!data.length) return;
      var parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch (e) {
        return;
      }
      onEvent(name, parsed);
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          if (buffer.trim()) dispatch(buffer);
          return;
        }
        buffer = (buffer + decoder.decode(chunk.value, { stream: true })).replace(/\r\n/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
        return pump();
      });
    }
    return pump();
  }

  function sendMessage() {
    var text = ui.input.value.trim();
    if (!text || state.busy || state.exhausted) return;
    state.busy = true;
    ui.send.disabled = true;
    ui.input.value = "";
    ui.input.style.height = "";
    addBubble("user", text);
    var bubble = addBubble("bot typing", "");
    bubble.setAttribute("aria-busy", "true"); // announce the answer once, not delta by delta
    var answer = document.createTextNode("");
    var sentAt = performance.now();
    var counted = false;
    var accepted = false; // the server took the message (a 200 stream started)
    var finished = false;
    var streamError = null;
    var failure = null;
    function countMessage(withLatency) {
      if (counted) return;
      counted = true;
      track("message", withLatency ? { latencyMs: Math.round(performance.now() - sentAt) } : {});
    }
    function notify(text) {
      if (answer.data) addBubble("notice", text); // keep the part of the answer that arrived
      else showNotice(bubble, text);
    }

    postChat(text)
      .then(function (response) {
        if (!response.ok || !response.body) {
          return readJson(response).then(function (data) {
            throw new HttpError(response.status, data, response.headers);
          });
        }
        accepted = true;
        return readEvents(response, function (name, data) {
          if (name === "conversation") state.conversationId = data.conversationId || state.conversationId;
          else if (name === "delta" && data.text) {
            if (!answer.parentNode) bubble.appendChild(answer);
            countMessage(true);
            answer.appendData(data.text);
            appendToLog(null);
          } else if (name === "usage") {
            var tokens = (data.inputTokens || 0) + (data.outputTokens || 0);
            if (tokens > 0) track("tokens", { count: tokens });
          } else if (name === "done") finished = true;
          else if (name === "error") streamError = data;
        });
      })
      .catch(function (error) {
        failure = error instanceof HttpError ? error : { status: 0 };
      })
      .then(function () {
        if (accepted) countMessage(false);
        if (failure && failure.status === 404) state.conversationId = null;
        if (streamError) {
          notify(
            streamError.code === "quota_exceeded" && streamError.message
              ? streamError.message
              : "Sorry, the assistant could not answer just now. Please try again."
          );
        } else if (failure) notify(politeMessage(failure));
        if ((failure && failure.code === "quota_exceeded") || (streamError && streamError.code === "quota_exceeded")) {
          state.quotaNoticeShown = true; // the server's own words were just shown
          state.exhausted = true;
        }
        else if (!finished) notify("The answer was interrupted. Please try again.");
        else if (!answer.data) showNotice(bubble, "The assistant had nothing to say to that. Try rephrasing?");
        bubble.classList.remove("typing");
        bubble.removeAttribute("aria-busy");
        state.busy = false;
        setExhausted(state.exhausted);
        if (state.open && !state.exhausted) ui.input.focus();
      });
  }

  // ---- public API ----------------------------------------------------------------------------

  /** Chat as a signed-in user of the site (``signature`` = hex HMAC-SHA256(secretKey,
   * "widgetId|userId|exp"), computed by the site's server; ``exp`` in Unix seconds), or
   * anonymously again with ``identify(null)``. Resolves to whether the server accepted it. */
  function identify(userId, signature, exp) {
    var identity = identityFrom(userId, signature, exp);
    if (JSON.stringify(identity) === JSON.stringify(state.identity)) return Promise.resolve(true);
    state.identity = identity;
    state.conversationId = null; // a conversation belongs to whoever started it
    if (!state.session && !state.pending) {
      if (state.refused && identity) {
        state.refused = false;
        boot(0);
      }
      return Promise.resolve(true);
    }
    return ensureSession(true).then(
      function () { return true; },
      function (error) {
        console.warn(PREFIX + "identify() was refused (" + error.code + ").");
        return false;
      }
    );
  }

  window.BazaarWidget = Object.freeze({
    version: VERSION,
    open: openPanel,
    close: closePanel,
    identify: identify,
  });

  restoreUnsent();
  boot(0);
})();
