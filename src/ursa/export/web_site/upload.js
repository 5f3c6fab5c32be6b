// The upload page: drag-and-drop or file picker → ursaModel.predict → bars for the top classes
// (the page's states are views.js's UploadPage, as on ursa serve's page).
"use strict";

new UploadPage(
  (file) => ursaModel.predict(file),
  (answer) => `in this browser: ${answer.browser_ms.toFixed(1)} ms (decode, resize, model)`,
);

pages.showModel(document.getElementById("model"), document.getElementById("runtime"));
