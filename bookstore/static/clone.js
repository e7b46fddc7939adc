// The clone landing page: POST the clone, then open the new file in the user's frontend.
// Its settings come from the page's JSON block (#bookstore-clone-config).
(function () {
  "use strict";
  function start() {
    var config = JSON.parse(document.getElementById("bookstore-clone-config").textContent);
    var form = document.getElementById("bookstore-clone-form");
    var button = document.getElementById("bookstore-clone-button");
    var status = document.getElementById("bookstore-status");

    function escapePath(path) {
      return path.split("/").map(encodeURIComponent).join("/");
    }

    function show(message, kind) {
      status.textContent = message;
      status.className = "bs-status" + (kind ? " is-" + kind : "");
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = Object.assign({}, config.post_model);
      var target = document.getElementById("bookstore-target").value.trim();
      if (target) { body.target_path = target; }
      if (document.getElementById("bookstore-overwrite").checked) { body.overwrite = true; }
      button.disabled = true;
      show("Cloning\u2026", "busy");
      fetch(config.api_url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-XSRFToken": config.xsrf_token },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            throw new Error(data.message || (response.status + " " + response.statusText));
          }
          return data;
        });
      }).then(function (model) {
        var template = model.type === "notebook" ? config.open_notebook_url : config.open_file_url;
        show("Cloned to " + model.path + "; opening it\u2026", "busy");
        window.location.assign(template.replace("{path}", escapePath(model.path)));
      }).catch(function (error) {
        show("Clone failed: " + error.message, "error");
        button.disabled = false;
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
