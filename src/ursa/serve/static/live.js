// The live page: webcam frames → POST /predict, one at a time (the chart, legend and
// statistics are views.js's LivePage, shared with the web export's page).
"use strict";

const FRAME_SIDE = 320;  // longest side of the JPEG sent; the server resizes anyway
const frame = document.createElement("canvas");

function grabFrame(video) {
  const scale = FRAME_SIDE / Math.max(video.videoWidth, video.videoHeight);
  frame.width = Math.max(1, Math.round(video.videoWidth * scale));
  frame.height = Math.max(1, Math.round(video.videoHeight * scale));
  frame.getContext("2d").drawImage(video, 0, 0, frame.width, frame.height);
  return new Promise((resolve) => frame.toBlob(resolve, "image/jpeg", 0.85));
}

const page = new LivePage(async (video) => ursa.predict(await grabFrame(video)));

ursa.showModel(document.getElementById("model")).then((meta) => {
  if (meta) page.ready(meta.class_names);
});
