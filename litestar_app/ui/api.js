// The one way the UI talks to the REST API: same-origin fetch (the login cookie travels with it, the browser
// sends Origin on state-changing requests as the security policy wants), JSON in and out, and every failure
// turned into an ApiError whose message is the server's own words ({"error": "..."}).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const loginListeners = [];

/** Called with no argument when the server answers 401: the UI shows its login form. */
export function onLoginRequired(listener) { loginListeners.push(listener); }

export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `The server cannot be reached (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.status === 401) loginListeners.forEach((listener) => listener());
  if (!response.ok) {
    const reason = (data && (data.error || data.detail)) || text.trim() || response.statusText;
    const error = new ApiError(response.status, readable(response.status, reason));
    error.request = `${method} ${path.split('?')[0]}`;  // for a bug report; the person reads the message
    throw error;
  }
  return data;
}

// What a failure means to the person, said in their words; the server's own reason follows where it helps.
const READABLE = [
  [(status, reason) => /no model (is )?loaded/i.test(reason), () => 'No model is loaded: load one in the Models view first.'],
  [(status) => status === 401, () => 'Your session has ended: sign in again.'],
  [(status) => status === 429, () => 'The queue is full right now: try again in a moment.'],
  [(status) => status === 502, (reason) => `A service this server relies on did not answer (${reason}).`],
  [(status) => status === 413, () => 'That is too large for the server (see limits.max_body_bytes).'],
  [(status) => status >= 500, (reason) => `The server could not do that: ${reason}`],
];

function readable(status, reason) {
  const found = READABLE.find(([matches]) => matches(status, String(reason)));
  const text = found ? found[1](String(reason)) : String(reason);
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Shows a message to the person: errors stay until dismissed, notices fade. */
export function notify(message, kind = 'error') {
  const box = document.getElementById('messages');
  const item = document.createElement('div');
  item.className = `message ${kind}`;
  const text = document.createElement('span');
  text.textContent = message;
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', 'Dismiss message');
  close.addEventListener('click', () => item.remove());
  item.append(text, close);
  box.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 4000);
}

/** Wraps an event handler so that any failure is shown, never swallowed. */
export function guarded(handler) {
  return async (...args) => {
    try {
      return await handler(...args);
    } catch (error) {
      notify(error.message || String(error));
      return undefined;
    }
  };
}

/** `<lora:...>`-style text is never parsed as HTML: every element is built with textContent. */
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** A File or Blob as a data: URL (what the API's *_base64 fields take after the comma). */
export function readFile(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`Cannot read ${blob.name || 'the file'}.`));
    reader.readAsDataURL(blob);
  });
}

/** A file of this server (an output, a job's saved input) as a data: URL. */
export async function fetchDataUrl(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (!response.ok) throw new ApiError(response.status, `GET ${url}: ${response.status} ${response.statusText}`);
  return readFile(await response.blob());
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function outputUrl(path) { return `/output/${path.split('/').map(encodeURIComponent).join('/')}`; }
export function thumbUrl(path) { return `/thumb/${path.split('/').map(encodeURIComponent).join('/')}`; }
export const isVideo = (path) => /\.(webm|mp4|avi|mkv|mov)$/i.test(path);
