// bookstore history pages: confirm before restoring. Times stay as the server wrote them,
// in UTC and labelled, like the `bookstore` command's.
// Served as a file because the pages' Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form && form.matches && form.matches("form[data-confirm]")) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    }
  });
})();
