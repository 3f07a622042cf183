// The page's one <audio> plays the row whose [data-action=play] control was clicked; the
// buttons skip ±10 s and set the speed (1×, 1.5×, 2×). No build step, no library.
(function () {
  "use strict";
  var audio = document.getElementById("player");
  if (!audio) { return; }
  var now = document.getElementById("now-playing");
  var rate = 1;

  document.addEventListener("click", function (event) {
    var play = event.target.closest("[data-action=play]");
    if (play) {
      document.querySelectorAll("tr.playing").forEach(function (row) { row.classList.remove("playing"); });
      var row = play.closest("tr");
      if (row) { row.classList.add("playing"); }
      audio.src = play.getAttribute("data-src");
      audio.playbackRate = rate;
      now.textContent = play.getAttribute("data-label") || "";
      audio.play().catch(function () { /* autoplay refused: the controls still work */ });
      return;
    }
    var skip = event.target.closest("[data-skip]");
    if (skip && audio.src) {
      var target = audio.currentTime + Number(skip.getAttribute("data-skip"));
      var end = isFinite(audio.duration) ? audio.duration : target;
      audio.currentTime = Math.max(0, Math.min(target, end));
      return;
    }
    var speed = event.target.closest("[data-rate]");
    if (speed) {
      rate = Number(speed.getAttribute("data-rate"));
      audio.playbackRate = rate;
      document.querySelectorAll("[data-rate]").forEach(function (b) { b.classList.toggle("active", b === speed); });
    }
  });
  // A new source resets the rate in some browsers: keep the chosen one.
  audio.addEventListener("loadedmetadata", function () { audio.playbackRate = rate; });

  var zip = document.getElementById("zip-form");
  if (zip) {
    zip.addEventListener("submit", function (event) {
      if (!zip.querySelector("input[name=key]:checked")) { event.preventDefault(); }
    });
  }
})();
