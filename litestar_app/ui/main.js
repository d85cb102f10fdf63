// Entry point: the hash router between views, the header's live state and the login dialog.

import { api, element, guarded, notify, onLoginRequired } from './api.js';
import * as live from './live.js';
import { modelFiles, modelType, refreshServer, server } from './state.js';
import * as generate from './generate.js';
import * as queue from './queue.js';
import * as models from './models.js';
import * as gallery from './gallery.js';
import * as settings from './settings.js';
import * as assistant from './assistant.js';
import * as drop from './drop.js';

const VIEWS = { generate, queue, models, gallery, settings, assistant };

export function currentView() {
  const name = location.hash.slice(1);
  return name in VIEWS ? name : 'generate';
}

const showView = guarded(async () => {
  const name = currentView();
  for (const view of Object.keys(VIEWS)) {
    document.getElementById(`view-${view}`).hidden = view !== name;
  }
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  delete document.body.dataset.ready;
  await VIEWS[name].show?.();
  // The view shows the server's current state (tests wait for this), unless another view was chosen meanwhile.
  if (currentView() === name) document.body.dataset.ready = name;
});

function showServerState() {
  const health = server.health;
  let text = 'No model loaded';
  if (health?.model_loading) text = `Loading ${health.loading_model_name}…`;
  else if (health?.model_loaded) text = `${health.model_name}${health.model_architecture ? ` (${health.model_architecture})` : ''}`;
  document.getElementById('model-state').textContent = text;
}

/** The header's workers (GET /workers): name, state and the model each holds; refreshed on the live events. */
async function showWorkers() {
  const workers = await api('/workers');
  document.getElementById('worker-states').replaceChildren(...workers.map((worker) => {
    // resident models, least recently used first, with their MiB; the budget when one is set
    const held = worker.models.map((model) => `${model.name.split('/').pop()} (${model.mib} MiB)`).join(', ');
    const budget = worker.memory_budget_mib ? ` · ${worker.models_mib}/${worker.memory_budget_mib} MiB` : '';
    const model = (held || 'no model') + budget;
    const text = `${worker.name}: ${worker.state} · ${model}`;
    return element('li', { class: worker.state, 'data-worker': worker.name, text,
      title: worker.last_error ? `${text} (last error: ${worker.last_error})` : `${text} (${worker.backend}, ${worker.device})` });
  }));
}

/** The header's model switcher: every main model; choosing another opens its load form (components filled in
 * from its last load) in the Models view. */
let switchable = [];
async function showModelSwitcher() {
  await refreshSwitchable();
  const select = document.getElementById('model-switcher');
  const health = server.health;
  const loaded = health?.model_loaded ? `${health.model_type}/${health.model_name}` : '';
  select.replaceChildren(element('option', { value: '', text: health?.model_loading ? `Loading ${health.loading_model_name}…` : 'No model loaded' }),
    ...switchable.map((file) => element('option', { value: `${file.type}/${file.name}`, text: file.name })));
  select.value = [...select.options].some((option) => option.value === loaded) ? loaded : '';
  select.options[0].hidden = Boolean(loaded);
}

async function refreshSwitchable() {
  if (!server.types) return;
  switchable = (await modelFiles()).filter((file) => modelType(file.type)?.loadable);
}

async function switchModel() {
  const select = document.getElementById('model-switcher');
  const file = switchable.find((candidate) => `${candidate.type}/${candidate.name}` === select.value);
  await showModelSwitcher();  // shows the loaded one again until the new one has loaded
  if (!file) return;
  location.hash = '#models';
  await models.openLoadDialog(file);
}

let workersTimer = null;
/** At most one GET /workers per 150 ms, however fast the events come. */
function refreshWorkers() {
  workersTimer ??= setTimeout(() => { workersTimer = null; guarded(showWorkers)(); }, 150);
}

// The theme: the system's, or the one chosen with the header's toggle (kept in localStorage).
const THEMES = [['system', '◐ System', 'light'], ['light', '☀ Light', 'dark'], ['dark', '☾ Dark', 'system']];
const THEME_KEY = 'sdcpp-restapi.theme';

function applyTheme(name) {
  const [theme, text, next] = THEMES.find(([candidate]) => candidate === name) ?? THEMES[0];
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const toggle = document.getElementById('theme-toggle');
  toggle.textContent = text;
  toggle.setAttribute('aria-label', `Theme: ${theme === 'system' ? 'follows the system' : theme} (click for ${next})`);
  toggle.dataset.theme = theme;
}

function storedTheme() {
  try { return localStorage.getItem(THEME_KEY) ?? 'system'; } catch { return 'system'; }
}

/** "Sign out" only where the server asks for a key (GET /ui/session). */
async function showSignOut() {
  const session = await api('/ui/session');
  document.getElementById('logout-form').hidden = !session.keys_required;
}

function start() {
  applyTheme(storedTheme());
  document.getElementById('theme-toggle').addEventListener('click', () => {
    const [, , next] = THEMES.find(([candidate]) => candidate === (document.getElementById('theme-toggle').dataset.theme ?? 'system'));
    try { localStorage.setItem(THEME_KEY, next); } catch { /* not kept */ }
    applyTheme(next);
  });
  guarded(showSignOut)();
  onLoginRequired(() => {
    const dialog = document.getElementById('login-dialog');
    if (!dialog.open) dialog.showModal();
  });
  live.onConnection((connected) => {
    const state = document.getElementById('socket-state');
    state.textContent = connected ? 'live' : 'offline';
    state.className = connected ? 'online' : 'offline';
  });
  const refresh = guarded(refreshServer);
  for (const event of ['model_loaded', 'model_unloaded', 'upscaler_loaded', 'upscaler_unloaded']) live.on(event, refresh);
  document.addEventListener('server-state', showServerState);
  document.addEventListener('server-state', guarded(showModelSwitcher));
  document.addEventListener('models-changed', guarded(showModelSwitcher));
  document.getElementById('model-switcher').addEventListener('change', guarded(switchModel));
  for (const event of ['job_status_changed', 'job_cancelled', 'model_loaded', 'model_unloaded', 'model_loading_progress', 'server_status']) {
    live.on(event, refreshWorkers);
  }
  live.onConnection((connected) => { if (connected) refreshWorkers(); });
  for (const view of Object.values(VIEWS)) view.init();
  drop.init();
  window.addEventListener('hashchange', showView);
  live.connect();
  refresh();  // views that depend on the server's state follow its 'server-state' event
  showView();
}

window.addEventListener('unhandledrejection', (event) => notify(event.reason?.message || String(event.reason)));
start();
