// vitalflow dashboard: acknowledgements stored server-side and shared by every viewer.
// The alert list and banner come from the live stream (app.js); this keeps them in step with
// GET /alerts: an alert acknowledged by anyone is marked with who and when, everywhere, within
// one poll (POLL_MS), and each open alert in the list has its own "Acknowledge" button.
"use strict";

(() => {
  const POLL_MS = 3000;
  const acknowledged = new Map(); // alert id -> {by, at}

  function headers() {
    const token = window.vitalflow && window.vitalflow.token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async function acknowledge(ids) {
    for (const id of ids) {
      try {
        const response = await fetch(`/alerts/${encodeURIComponent(id)}/ack`, {
          method: "POST",
          headers: { ...headers(), "Content-Type": "application/json" },
          body: "{}",
        });
        if (response.ok) {
          const ack = await response.json();
          acknowledged.set(ack.alert_id, ack);
        }
      } catch (error) {
        // The next poll shows the truth; the button stays for another try.
      }
    }
    render();
  }

  async function poll() {
    try {
      const response = await fetch("/alerts?state=acknowledged&limit=500", {
        headers: headers(),
        cache: "no-store",
      });
      if (response.ok) {
        const body = await response.json();
        for (const item of body.items) acknowledged.set(item.id, item.acknowledged);
      }
    } catch (error) {
      // Store or API away: the list keeps what it knew.
    }
    render();
  }

  function render() {
    for (const li of document.querySelectorAll("#alert-list li[data-alert-ids]")) {
      const ids = li.dataset.alertIds.split(" ").filter(Boolean);
      if (!ids.length) continue;
      const acks = ids.map((id) => acknowledged.get(id)).filter(Boolean);
      let info = li.querySelector(".ackinfo");
      if (acks.length === ids.length) {
        li.classList.add("acked");
        li.dataset.acknowledgedBy = acks[0].by;
        const button = li.querySelector("button.ack");
        if (button) button.remove();
        if (!info) {
          info = document.createElement("div");
          info.className = "ackinfo";
          li.append(info);
        }
        info.textContent = `acknowledged by ${acks[0].by} at ${new Date(acks[0].at).toLocaleTimeString()}`;
      } else if (!li.querySelector("button.ack")) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "ack";
        button.textContent = "Acknowledge";
        button.addEventListener("click", () => {
          button.disabled = true;
          acknowledge(ids);
        });
        li.append(button);
      }
    }
    if (window.vitalflow) window.vitalflow.clearBannerIfAcknowledged(new Set(acknowledged.keys()));
  }

  window.vitalflowAlerts = { acknowledge, poll };
  // New alerts appear in the list as events arrive: give them their button right away.
  new MutationObserver(render).observe(document.getElementById("alert-list"), { childList: true });
  poll();
  setInterval(poll, POLL_MS);
})();
