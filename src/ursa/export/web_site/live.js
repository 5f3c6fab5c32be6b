// The live page: camera frames → ursaModel.predict, one at a time, in this browser (the
// chart, legend and statistics are views.js's LivePage, as on ursa serve's live page).
"use strict";

const page = new LivePage((video) => ursaModel.predict(video));

pages.showModel(document.getElementById("model"), document.getElementById("runtime")).then((info) => {
  if (info) page.ready(info.class_names);
});
