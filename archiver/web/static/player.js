// The search page's behaviour, no build step, no library:
// - the one <audio> plays the row whose [data-action=play] was pressed; that control becomes
//   Pause while its row plays (and pauses it); Space plays/pauses, ← and → skip 10 s;
//   the speed buttons say which is on (aria-pressed);
// - a live region announces the result count and what is playing;
// - an ended session (a play that fails, a download, the zip) leads to the login page, which
//   brings the user back to this very search;
// - the time pickers add a time of day to "from" and "to".
(function () {
  "use strict";
  var audio = document.getElementById("player");
  var live = document.getElementById("live");
  var now = document.getElementById("now-playing");
  var rate = 1;
  var current = null; // the [data-action=play] control of the row loaded in the player

  function announce(text) {
    if (!live) { return; }
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  function loginUrl() {
    return "/login?ended=1&next=" + encodeURIComponent(location.pathname + location.search);
  }

  // Resolves true when the session lasts; otherwise goes to the login page.
  function sessionAlive() {
    return fetch("/api/session", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { location.assign(loginUrl()); return false; }
        return true;
      })
      .catch(function () { return true; }); // the network: let the action report itself
  }

  // The player's height pads the page's end (phones: the player is fixed at the bottom).
  var box = document.getElementById("player-box");
  function pad() {
    if (box) { document.body.style.setProperty("--player-h", (box.offsetHeight + 12) + "px"); }
  }
  if (box) { document.body.classList.add("has-player"); pad(); window.addEventListener("resize", pad); }

  // "Skip to results" moves the keyboard's focus there, not only the view.
  document.querySelectorAll("a.skip").forEach(function (link) {
    link.addEventListener("click", function (event) {
      var target = document.querySelector(link.getAttribute("href"));
      if (target) { event.preventDefault(); target.focus(); }
    });
  });

  var total = document.getElementById("total");
  if (total) { announce(total.textContent.trim()); }

  function label(template, text) { return (template || "").replace("{label}", text); }

  function showState(button, playing) {
    if (!button) { return; }
    var icon = button.querySelector(".icon");
    var text = button.querySelector(".text");
    if (icon) { icon.textContent = playing ? "❚❚" : "▶"; }
    if (text) { text.textContent = playing ? audio.dataset.pause : audio.dataset.play; }
    button.setAttribute("aria-label", button.getAttribute(playing ? "data-pause-label" : "data-play-label"));
    button.classList.toggle("playing", playing);
  }

  function toggle(button) {
    if (current === button && audio.getAttribute("src")) {
      if (audio.paused) { audio.play().catch(function () {}); } else { audio.pause(); }
      return;
    }
    if (current) { showState(current, false); }
    document.querySelectorAll("tr.playing").forEach(function (row) { row.classList.remove("playing"); });
    current = button;
    var row = button.closest("tr");
    if (row) { row.classList.add("playing"); }
    audio.src = button.getAttribute("data-src");
    audio.playbackRate = rate;
    now.textContent = button.getAttribute("data-label") || "";
    audio.play().catch(function () { /* autoplay refused: the controls still work */ });
    pad();
    if (row && row.scrollIntoView) { row.scrollIntoView({ block: "nearest" }); }
  }

  function skip(seconds) {
    if (!audio.getAttribute("src")) { return; }
    var target = audio.currentTime + seconds;
    var end = isFinite(audio.duration) ? audio.duration : target;
    audio.currentTime = Math.max(0, Math.min(target, end));
  }

  function setRate(button) {
    rate = Number(button.getAttribute("data-rate"));
    audio.playbackRate = rate;
    document.querySelectorAll("[data-rate]").forEach(function (b) {
      var on = b === button;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }

  if (audio) {
    document.addEventListener("click", function (event) {
      var play = event.target.closest("[data-action=play]");
      if (play) { toggle(play); return; }
      var jump = event.target.closest("[data-skip]");
      if (jump) { skip(Number(jump.getAttribute("data-skip"))); return; }
      var speed = event.target.closest("[data-rate]");
      if (speed) { setRate(speed); return; }
      var download = event.target.closest("[data-action=download]");
      if (download) {
        event.preventDefault();
        sessionAlive().then(function (alive) { if (alive) { location.assign(download.href); } });
      }
    });
    // A new source resets the rate in some browsers: keep the chosen one.
    audio.addEventListener("loadedmetadata", function () { audio.playbackRate = rate; });
    audio.addEventListener("play", function () {
      showState(current, true);
      announce(label(audio.dataset.playing, now.textContent));
    });
    audio.addEventListener("pause", function () {
      showState(current, false);
      announce(label(audio.dataset.paused, now.textContent));
    });
    audio.addEventListener("ended", function () { showState(current, false); });
    audio.addEventListener("error", function () {
      showState(current, false);
      sessionAlive();
    });
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      var typing = target.closest && target.closest("input, select, textarea, button, a, audio, summary");
      if (event.altKey || event.ctrlKey || event.metaKey || !audio.getAttribute("src")) { return; }
      if (event.key === " " && !typing) {
        event.preventDefault();
        if (audio.paused) { audio.play().catch(function () {}); } else { audio.pause(); }
      } else if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && !(typing && target.matches("input, select, textarea, audio"))) {
        event.preventDefault();
        skip(event.key === "ArrowLeft" ? -10 : 10);
      }
    });
  }

  var zip = document.getElementById("zip-form");
  if (zip) {
    zip.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!zip.querySelector("input[name=key]:checked")) { return; }
      sessionAlive().then(function (alive) { if (alive) { zip.submit(); } });
    });
  }

  // "from"/"to" take a date, or a date and a time: a picked time is added to the date typed.
  document.querySelectorAll("input[data-time-for]").forEach(function (picker) {
    var field = document.getElementById(picker.getAttribute("data-time-for"));
    var match = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})/.exec(field.value);
    if (match) { picker.value = match[2]; }
  });
  var form = document.getElementById("search-form");
  if (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[data-time-for]").forEach(function (picker) {
        var field = document.getElementById(picker.getAttribute("data-time-for"));
        var day = field.value.trim().slice(0, 10);
        if (picker.value && /^\d{4}-\d{2}-\d{2}$/.test(day)) { field.value = day + "T" + picker.value; }
        else if (!picker.value && /^\d{4}-\d{2}-\d{2}[T ]/.test(field.value.trim()) && picker.dataset.cleared) {
          field.value = day;
        }
      });
    });
    form.querySelectorAll("input[data-time-for]").forEach(function (picker) {
      picker.addEventListener("change", function () { if (!picker.value) { picker.dataset.cleared = "1"; } });
    });
  }
})();
