// vitalflow pages: the API token a page starts with, shared by the dashboard and the patient
// view. A token in the URL (`?access_token=`) is kept for the tab and taken out of the address
// bar, history and screenshots; otherwise the tab's stored one, if any.
"use strict";

window.vitalflowInitialToken = function initialToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("access_token");
  if (fromUrl) {
    sessionStorage.setItem("vitalflow.token", fromUrl);
    url.searchParams.delete("access_token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return sessionStorage.getItem("vitalflow.token");
};
