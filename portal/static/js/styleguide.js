// The style guide's demo buttons: each shows a sample toast of its level.
(function () {
  "use strict";

  var TEXTS = {
    success: "Instance web-1 created.",
    info: "Snapshot of web-1 queued.",
    warning: "Node node-b has less than 10% disk left.",
    error: "Could not delete network lan: instances still use it.",
  };

  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-sg-toast]");
    if (button) window.sfcloud.toast(TEXTS[button.dataset.sgToast], button.dataset.sgToast);
  });
})();
