// The event stream: one WebSocket to /ws on this same origin (so the page needs no second port, the CSP stays
// 'self', and the login cookie authenticates the handshake), reconnected with a growing delay.

const listeners = new Map();
const stateListeners = [];
let socket = null;
let retryDelay = 500;

/** `handler(data, message)` for each event named `name` ('*' for all). */
export function on(name, handler) {
  if (!listeners.has(name)) listeners.set(name, []);
  listeners.get(name).push(handler);
}

/** `handler(connected)` whenever the connection opens or closes. */
export function onConnection(handler) { stateListeners.push(handler); }

export const connected = () => socket !== null && socket.readyState === WebSocket.OPEN;

function dispatch(message) {
  for (const name of [message.event, '*']) {
    for (const handler of listeners.get(name) || []) handler(message.data, message);
  }
}

export function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.addEventListener('open', () => {
    retryDelay = 500;
    stateListeners.forEach((handler) => handler(true));
  });
  socket.addEventListener('message', (event) => dispatch(JSON.parse(event.data)));
  socket.addEventListener('close', () => {
    stateListeners.forEach((handler) => handler(false));
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  });
}
