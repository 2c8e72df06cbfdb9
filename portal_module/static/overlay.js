/*
 * WaddleBot OBS overlay: media, ticker and form responses of one channel, live.
 *
 * Listens to the page's server-sent event stream. EventSource reconnects by itself
 * (the server sends `retry:`) and resends the last event id, so responses published
 * while the portal restarted are replayed; if the browser gives up (a proxy answered
 * with an error), a new connection is opened with growing delays. Media, tickers and
 * forms each have a queue and show one item at a time. Plain JavaScript, no framework.
 */
(function () {
  "use strict";

  var STAGE_WIDTH = 1920;
  var STAGE_HEIGHT = 1080;
  var DEFAULT_SECONDS = 10;
  var MAX_PLAY_SECONDS = 300;
  var FORM_SECONDS = 120;
  var body = document.body;
  var eventsUrl = body.getAttribute("data-events");
  var only = body.getAttribute("data-only") || null;
  var state = { connected: false, received: [], lastEventId: null };
  var seenIds = [];
  var source = null;
  var fallbackDelay = 2000;
  window.WaddleBotOverlay = state;

  // -- stage: designed for 1920x1080, scaled to any other browser-source size ---------
  function fitStage() {
    var stage = document.getElementById("stage");
    var scale = Math.min(window.innerWidth / STAGE_WIDTH, window.innerHeight / STAGE_HEIGHT);
    stage.style.transform = scale > 0 && scale !== 1 ? "scale(" + scale + ")" : "";
  }
  window.addEventListener("resize", fitStage);
  fitStage();

  // -- helpers ------------------------------------------------------------------------
  function seconds(value) {
    var number = Number(value);
    return isFinite(number) && number > 0 ? Math.min(number, MAX_PLAY_SECONDS) : null;
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function once(fn) {
    var called = false;
    return function () {
      if (!called) { called = true; fn(); }
    };
  }

  function Queue(show) {
    var items = [];
    var busy = false;
    function next() {
      if (busy || !items.length) { return; }
      busy = true;
      show(items.shift(), once(function () { busy = false; next(); }));
    }
    return { push: function (item) { items.push(item); next(); } };
  }

  function remove(node, delay) {
    node.classList.remove("shown");
    setTimeout(function () {
      if (node.parentNode) { node.parentNode.removeChild(node); }
    }, delay === undefined ? 350 : delay);
  }

  // -- media ----------------------------------------------------------------------------
  function isDirectVideo(url) {
    return /\.(mp4|webm|ogv|ogg|mov|m4v)(\?|#|$)/i.test(url);
  }

  function embedUrl(url) {
    var parsed;
    try { parsed = new URL(url); } catch (e) { return url; }
    var host = parsed.hostname;
    var slug = null;
    if (host === "clips.twitch.tv" && parsed.pathname !== "/embed") {
      slug = parsed.pathname.replace(/^\/+|\/+$/g, "");
    } else if (/(^|\.)twitch\.tv$/.test(host) && parsed.pathname.indexOf("/clip/") >= 0) {
      slug = parsed.pathname.split("/clip/")[1].split("/")[0];
    }
    if (slug) {
      parsed = new URL("https://clips.twitch.tv/embed");
      parsed.searchParams.set("clip", slug);
    }
    if (/(^|\.)twitch\.tv$/.test(parsed.hostname)) {
      if (!parsed.searchParams.get("parent")) { parsed.searchParams.set("parent", location.hostname); }
      parsed.searchParams.set("autoplay", "true");
      parsed.searchParams.set("muted", "false");
    }
    return parsed.toString();
  }

  function playable(node, done) {
    node.autoplay = true;
    node.addEventListener("ended", done);
    node.addEventListener("error", done);
    var started = node.play && node.play();
    if (started && started.catch) {
      started.catch(function () {
        // autoplay with sound refused (not in OBS): play muted rather than not at all
        node.muted = true;
        var again = node.play();
        if (again && again.catch) { again.catch(done); }
      });
    }
  }

  function showMedia(event, done) {
    var box = document.getElementById("media");
    var data = event.response_data || {};
    var kind = event.media_type || "image";
    var url = event.media_url;
    var duration = seconds(data.duration);
    var item = element("div", "media-item media-" + kind);
    item.setAttribute("data-response-id", event.id || "test");
    var finish = once(function () { remove(item); setTimeout(done, 400); });
    var media;
    if (kind === "image") {
      media = element("img");
      media.alt = data.caption || data.title || "";
      media.src = url;
      duration = duration || DEFAULT_SECONDS;
    } else if (kind === "audio") {
      media = element("audio");
      media.src = url;
      item.appendChild(element("div", "audio-badge", "\u266b"));
      playable(media, finish);
      duration = duration || MAX_PLAY_SECONDS;
    } else if (isDirectVideo(url)) {
      media = element("video", "fill");
      media.src = url;
      media.playsInline = true;
      playable(media, finish);
      duration = duration || (kind === "clip" ? DEFAULT_SECONDS : MAX_PLAY_SECONDS);
    } else {
      media = element("iframe");
      media.src = embedUrl(url);
      media.allow = "autoplay; encrypted-media";
      media.setAttribute("referrerpolicy", "no-referrer");
      media.setAttribute("scrolling", "no");
      duration = duration || DEFAULT_SECONDS;
    }
    item.appendChild(media);
    var caption = data.caption || data.title || event.chat_message;
    if (caption) { item.appendChild(element("div", "media-caption", caption)); }
    box.appendChild(item);
    requestAnimationFrame(function () { item.classList.add("shown"); });
    setTimeout(finish, duration * 1000);
  }

  // -- ticker ---------------------------------------------------------------------------
  function showTicker(event, done) {
    var box = document.getElementById("ticker");
    var duration = seconds(event.ticker_duration) || DEFAULT_SECONDS;
    var item = element("div", "ticker-item");
    item.setAttribute("data-response-id", event.id || "test");
    var text = element("span", "ticker-text", event.ticker_text || "");
    text.style.animationDuration = duration + "s";
    item.appendChild(text);
    box.appendChild(item);
    setTimeout(function () { remove(item, 0); done(); }, duration * 1000);
  }

  // -- form -----------------------------------------------------------------------------
  var INPUT_TYPES = { text: "text", number: "number", email: "email", url: "url", date: "date", time: "time" };

  function optionsOf(field) {
    return (field.options || []).map(function (option) {
      if (option !== null && typeof option === "object") {
        var value = option.value !== undefined ? option.value : option.label;
        return { value: String(value), label: String(option.label !== undefined ? option.label : value) };
      }
      return { value: String(option), label: String(option) };
    });
  }

  function choiceGroup(field, type, id) {
    var group = element("fieldset", "choices");
    group.appendChild(element("legend", null, field.label || field.name));
    optionsOf(field).forEach(function (option, index) {
      var label = element("label", "choice");
      var input = element("input");
      input.type = type;
      input.name = field.name;
      input.value = option.value;
      input.id = id + "-" + index;
      if (type === "radio" && field.required && index === 0) { input.required = true; }
      label.appendChild(input);
      label.appendChild(document.createTextNode(option.label));
      group.appendChild(label);
    });
    return group;
  }

  function fieldControl(field, index) {
    var id = "waddlebot-field-" + index;
    var wrap = element("div", "field field-" + field.type);
    var type = field.type;
    if (type === "radio" || (type === "checkbox" && (field.options || []).length)) {
      wrap.appendChild(choiceGroup(field, type, id));
      return wrap;
    }
    var label = element("label", null, field.label || field.name);
    label.htmlFor = id;
    var control;
    if (type === "textarea") {
      control = element("textarea");
      control.rows = 4;
    } else if (type === "select" || type === "multiselect") {
      control = element("select");
      control.multiple = type === "multiselect";
      if (!control.multiple) {
        var blank = element("option", null, "");
        blank.value = "";
        control.appendChild(blank);
      }
      optionsOf(field).forEach(function (option) {
        var node = element("option", null, option.label);
        node.value = option.value;
        control.appendChild(node);
      });
    } else if (type === "checkbox") {
      control = element("input");
      control.type = "checkbox";
      control.value = "true";
      label.className = "choice";
      control.id = id;
      control.name = field.name;
      label.insertBefore(control, label.firstChild);
      wrap.appendChild(label);
      return wrap;
    } else {
      control = element("input");
      control.type = INPUT_TYPES[type] || "text";
    }
    control.id = id;
    control.name = field.name;
    control.required = !!field.required;
    wrap.appendChild(label);
    wrap.appendChild(control);
    return wrap;
  }

  function formValues(form, fields) {
    var values = {};
    fields.forEach(function (field) {
      var controls = form.querySelectorAll("[name='" + CSS.escape(field.name) + "']");
      if (field.type === "multiselect") {
        var select = controls[0];
        values[field.name] = select ? Array.prototype.filter.call(select.options, function (o) {
          return o.selected;
        }).map(function (o) { return o.value; }) : [];
      } else if (field.type === "checkbox" && (field.options || []).length) {
        values[field.name] = Array.prototype.filter.call(controls, function (c) { return c.checked; })
          .map(function (c) { return c.value; });
      } else if (field.type === "checkbox") {
        values[field.name] = !!(controls[0] && controls[0].checked);
      } else if (field.type === "radio") {
        var chosen = Array.prototype.filter.call(controls, function (c) { return c.checked; })[0];
        values[field.name] = chosen ? chosen.value : null;
      } else if (field.type === "number") {
        values[field.name] = controls[0] && controls[0].value !== "" ? Number(controls[0].value) : null;
      } else {
        values[field.name] = controls[0] ? controls[0].value : "";
      }
    });
    return values;
  }

  function missingChoice(form, fields) {
    return fields.filter(function (field) {
      if (!field.required) { return false; }
      var values = formValues(form, [field])[field.name];
      return (Array.isArray(values) && !values.length) || values === false;
    })[0];
  }

  function submitForm(event, values) {
    var method = (event.form_submit_method || "POST").toUpperCase();
    var payload = { response_id: event.id || null, entity_id: event.entity_id, values: values };
    var url = event.form_submit_url;
    var options = { method: method, mode: "cors", credentials: "omit", referrerPolicy: "no-referrer" };
    if (method === "GET") {
      var target = new URL(url);
      Object.keys(values).forEach(function (name) {
        var value = values[name];
        (Array.isArray(value) ? value : [value]).forEach(function (v) {
          if (v !== null && v !== undefined) { target.searchParams.append(name, String(v)); }
        });
      });
      url = target.toString();
    } else {
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(payload);
    }
    return fetch(url, options).then(function (answer) {
      if (!answer.ok) { throw new Error("the form was refused (HTTP " + answer.status + ")"); }
      return answer;
    });
  }

  function showForm(event, done) {
    var layer = document.getElementById("form-layer");
    var fields = event.form_fields || [];
    var data = event.response_data || {};
    var form = element("form", "overlay-form");
    form.setAttribute("data-response-id", event.id || "test");
    form.noValidate = false;
    form.appendChild(element("h2", null, event.form_title || "Form"));
    if (event.form_description) { form.appendChild(element("p", "description", event.form_description)); }
    fields.forEach(function (field, index) { form.appendChild(fieldControl(field, index)); });
    var buttons = element("div", "buttons");
    var submit = element("button", null, "Send");
    submit.type = "submit";
    var close = element("button", "secondary", "Close");
    close.type = "button";
    buttons.appendChild(submit);
    buttons.appendChild(close);
    form.appendChild(buttons);
    var status = element("div", "form-status");
    form.appendChild(status);
    var finish = once(function () { remove(form, 0); done(); });
    var timer = setTimeout(finish, (seconds(data.duration) || FORM_SECONDS) * 1000);
    close.addEventListener("click", finish);
    form.addEventListener("submit", function (submitEvent) {
      submitEvent.preventDefault();
      var missing = missingChoice(form, fields);
      if (missing) {
        status.className = "form-status error";
        status.textContent = "Please answer: " + (missing.label || missing.name);
        return;
      }
      submit.disabled = true;
      status.className = "form-status";
      status.textContent = "Sending…";
      submitForm(event, formValues(form, fields)).then(function () {
        clearTimeout(timer);
        status.textContent = "Thank you!";
        if (event.form_callback_url) {
          var frame = element("iframe", "callback");
          frame.src = event.form_callback_url;
          frame.setAttribute("referrerpolicy", "no-referrer");
          form.appendChild(frame);
          setTimeout(finish, 6000);
        } else {
          setTimeout(finish, 2000);
        }
      }, function (error) {
        submit.disabled = false;
        status.className = "form-status error";
        status.textContent = "Could not send: " + error.message;
      });
    });
    layer.appendChild(form);
  }

  // -- events ---------------------------------------------------------------------------
  var queues = { media: Queue(showMedia), ticker: Queue(showTicker), form: Queue(showForm) };

  function alreadySeen(id) {
    if (id === undefined || id === null) { return false; }
    if (seenIds.indexOf(id) >= 0) { return true; }
    seenIds.push(id);
    if (seenIds.length > 500) { seenIds.shift(); }
    return false;
  }

  function handle(raw) {
    var event;
    try { event = JSON.parse(raw); } catch (e) { return; }
    if (!event || typeof event !== "object" || alreadySeen(event.id)) { return; }
    var action = event.response_action;
    if (!queues[action] || (only && action !== only)) { return; }
    state.received.push({ id: event.id || null, action: action, at: Date.now() });
    if (state.received.length > 100) { state.received.shift(); }
    queues[action].push(event);
  }

  function remember(messageEvent) {
    if (messageEvent.lastEventId) { state.lastEventId = messageEvent.lastEventId; }
  }

  function connect() {
    var url = eventsUrl;
    if (state.lastEventId !== null) {
      url += (url.indexOf("?") < 0 ? "?" : "&") + "last_event_id=" + encodeURIComponent(state.lastEventId);
    }
    source = new EventSource(url);
    source.addEventListener("hello", function (messageEvent) {
      remember(messageEvent);
      state.connected = true;
      body.setAttribute("data-connected", "true");
      fallbackDelay = 2000;
    });
    source.onmessage = function (messageEvent) {
      remember(messageEvent);
      handle(messageEvent.data);
    };
    source.onerror = function () {
      state.connected = false;
      body.setAttribute("data-connected", "false");
      if (source.readyState === EventSource.CLOSED) {
        // the browser gave up (e.g. a proxy answered 502 during a restart): try again later
        source = null;
        setTimeout(connect, fallbackDelay);
        fallbackDelay = Math.min(fallbackDelay * 2, 30000);
      }
    };
  }

  connect();
})();
