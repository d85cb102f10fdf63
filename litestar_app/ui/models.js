// The Models view: model files with type and search filters, size and hash; load with the components and
// options the architecture needs (from GET /models/inspect: its preset and the model's remembered profile),
// unload, loading progress; the upscaler; downloads with progress; conversion to GGUF. The model types, their
// folders and the components a load takes come from the server (GET /models/types, in state.js).

import { api, element, formatBytes, guarded, notify } from './api.js';
import * as live from './live.js';
import { modelFiles, modelType, refreshServer, server, serverFacts } from './state.js';

const $ = (id) => document.getElementById(id);
let allFiles = [];
let typeChoices = false;  // the type filter and the download form offer the server's model types
let loading = null;  // {model_name, model_type} being loaded from the dialog
let loadRunning = false;  // our POST /models/load is in flight
let loadingHideTimer = null;
const watched = new Map();  // job id -> list item (downloads and conversions)

const filesOfType = (type) => allFiles.filter((file) => file.type === type);

function row(file) {
  const hash = element('td', { class: 'hash' }, file.hash
    ? element('code', { text: file.hash.slice(0, 12), title: file.hash })
    : element('button', { type: 'button', text: 'Compute', 'aria-label': `Compute the SHA-256 of ${file.name}`, onclick: guarded(async (event) => {
      event.target.disabled = true;
      const result = await api(`/models/hash/${file.type}/${encodeURIComponent(file.name)}`);
      hash.replaceChildren(element('code', { text: result.hash.slice(0, 12), title: result.hash }));
    }) }));
  const actions = element('td');
  if (modelType(file.type)?.loadable) {
    actions.append(element('button', { type: 'button', text: file.is_loaded ? 'Loaded' : 'Load…', disabled: file.is_loaded,
      'aria-label': `Load ${file.name}`, 'data-model': file.name, onclick: guarded(() => openLoadDialog(file)) }));
  }
  return element('tr', {}, element('td', { class: 'name', text: file.name }), element('td', { text: file.type }),
    element('td', { text: formatBytes(file.size_bytes) }), hash, actions);
}

/** Load-request field -> the model type whose folder holds it. */
const componentTypes = () => Object.fromEntries(server.types.components.map((component) => [component.field, component.model_type]));

function offerModelTypes() {
  const names = server.types.model_types.map((type) => type.name);
  fillSelect($('model-type-filter'), names, 'all');
  fillSelect($('download-type'), names);
  typeChoices = true;
}

async function refresh() {
  await serverFacts();
  if (!typeChoices) offerModelTypes();
  allFiles = await modelFiles();
  const type = $('model-type-filter').value;
  const search = $('model-search').value.toLowerCase();
  const shown = allFiles.filter((file) => (!type || file.type === type) && (!search || file.name.toLowerCase().includes(search)));
  $('model-rows').replaceChildren(...(shown.length ? shown.map(row)
    : [element('tr', {}, element('td', { colspan: 5, class: 'hint', text: 'No model files match.' }))]));
  fillSelect($('upscaler-model'), filesOfType('esrgan').map((file) => file.name));
  fillSelect($('convert-input'), allFiles.filter((file) => !['esrgan', 'embedding'].includes(file.type))
    .map((file) => [`${modelType(file.type).folder}/${file.name}`, `${file.name} (${file.type})`]));
  document.dispatchEvent(new CustomEvent('models-changed'));
}

function fillSelect(select, values, empty = null) {
  const keep = select.value;
  const options = values.map((value) => (Array.isArray(value)
    ? element('option', { value: value[0], text: value[1] }) : element('option', { text: value })));
  select.replaceChildren(...(empty !== null ? [element('option', { value: '', text: empty })] : []), ...options);
  if ([...select.options].some((option) => option.value === keep)) select.value = keep;
}

function showLoaded() {
  const health = server.health;
  $('loaded-model').textContent = health?.model_loaded
    ? `Loaded: ${health.model_name} (${health.model_type}${health.model_architecture ? `, ${health.model_architecture}` : ''})`
    : `No model loaded.${health?.last_error ? ` Last error: ${health.last_error}` : ''}`;
  $('unload-model').disabled = !health?.model_loaded;
  $('upscaler-state').textContent = health?.upscaler_loaded ? `Loaded: ${health.upscaler_name}` : 'No upscaler loaded.';
  $('upscaler-unload').disabled = !health?.upscaler_loaded;
}

export async function openLoadDialog(file) {
  const inspection = await api(`/models/inspect?${new URLSearchParams({ model_name: file.name, model_type: file.type })}`);
  const preset = inspection.preset;
  const profile = inspection.profile;
  const required = preset?.requiredComponents ?? [];
  const types = componentTypes();
  const fields = preset
    ? [...new Set([...required, ...preset.optionalComponents, 'taesd'])].filter((field) => field in types)
    : Object.keys(types);
  $('load-title').textContent = `Load ${file.name}`;
  $('load-architecture').textContent = preset
    ? `${inspection.variant} (${preset.display_name}): needs ${required.join(', ') || 'no extra component'}`
      + `${required.includes('vae') ? ' (a TAESD can stand in for the VAE)' : ''}.`
      + (profile ? ' Filled in from its last load.' : '')
    : 'Architecture not recognised from the file: choose the components it needs.';
  $('load-components').replaceChildren(...fields.map((field) => {
    const id = `component-${field}`;
    const candidates = filesOfType(types[field]).map((candidate) => candidate.name);
    const select = element('select', { id, 'data-component': field });
    fillSelect(select, candidates, '(none)');
    let chosen = profile ? profile[field] : null;
    if (!profile && required.includes(field) && candidates.length === 1) chosen = candidates[0];
    // A TAESD decodes on its own: it stands in for a required VAE when no VAE file exists (and gives previews).
    if (!profile && field === 'taesd' && candidates.length === 1 && (filesOfType('vae').length === 0 || !required.includes('vae'))) chosen = candidates[0];
    if (chosen) select.value = chosen;
    const label = `${field}${required.includes(field) ? ' (required)' : ''}`;
    return element('div', {}, element('label', { for: id, text: label }), select);
  }));
  const options = profile?.options ?? {};
  for (const input of document.querySelectorAll('#load-form [data-option]')) {
    const value = options[input.dataset.option];
    if (input.type === 'checkbox') input.checked = value ?? input.defaultChecked;
    else input.value = value ?? input.defaultValue;
  }
  loading = { model_name: file.name, model_type: file.type };
  $('load-dialog').showModal();
}

function loadRequest() {
  const body = { ...loading, options: {} };
  for (const select of document.querySelectorAll('#load-components [data-component]')) {
    if (select.value) body[select.dataset.component] = select.value;
  }
  for (const input of document.querySelectorAll('#load-form [data-option]')) {
    if (input.type === 'checkbox') body.options[input.dataset.option] = input.checked;
    else if (input.value !== '') body.options[input.dataset.option] = input.type === 'number' ? Number(input.value) : input.value;
  }
  return body;
}

const load = guarded(async () => {
  const body = loadRequest();
  $('loading-label').hidden = $('loading-progress').hidden = false;
  $('loading-label').textContent = `Loading ${body.model_name}…`;
  $('loading-progress').removeAttribute('value');
  loadRunning = true;
  try {
    await api('/models/load', { method: 'POST', body });
    notify(`Loaded ${body.model_name}`, 'notice');
  } finally {
    loadRunning = false;
    $('loading-label').hidden = $('loading-progress').hidden = true;
    await refreshServer();
    await refresh();
  }
});

/** Also shown when the server loads on its own (the resident process restarted after a cancel); hidden again
 * once the events stop, since such a reload ends without a model_loaded event. */
function onLoadingProgress(data) {
  $('loading-label').hidden = $('loading-progress').hidden = false;
  clearTimeout(loadingHideTimer);
  loadingHideTimer = setTimeout(() => {
    if (!loadRunning) $('loading-label').hidden = $('loading-progress').hidden = true;
  }, 3000);
  $('loading-label').textContent = `Loading ${data.model_name ?? ''}${data.message ? `: ${data.message}` : ''}`;
  if (data.percentage !== undefined && data.percentage !== null) $('loading-progress').value = data.percentage;
}

/** A download or conversion job, shown with its status and progress until it ends. */
function watch(list, jobId, label) {
  const status = element('span', { class: 'badge pending', text: 'pending' });
  const bar = element('progress', { max: 100, value: 0, 'aria-label': `Progress of ${label}` });
  const item = element('li', { 'data-job-id': jobId }, element('span', { text: `${label} ` }), status, bar);
  watched.set(jobId, { item, status, bar });
  list.prepend(item);
}

function onJobEvent(data, message) {
  const entry = watched.get(data.job_id);
  if (!entry) return;
  if (message.event === 'job_progress') entry.bar.value = data.percentage;  // conversions: sd-cli's steps
  if (message.event === 'job_transfer_progress' && data.percentage !== null) entry.bar.value = data.percentage;
  if (message.event === 'job_status_changed') {
    entry.status.textContent = data.status;
    entry.status.className = `badge ${data.status}`;
    if (data.status === 'completed') { entry.bar.value = 100; guarded(refresh)(); }
    if (data.status === 'failed') guarded(async () => {
      const job = await api(`/queue/${data.job_id}`);
      notify(`${job.type} failed: ${job.error}`);
    })();
  }
}

export function init() {
  $('model-type-filter').addEventListener('change', guarded(refresh));
  $('model-search').addEventListener('input', guarded(refresh));
  $('model-filters').addEventListener('submit', (event) => event.preventDefault());
  $('load-dialog').addEventListener('close', () => { if ($('load-dialog').returnValue === 'load') load(); });
  $('unload-model').addEventListener('click', guarded(async () => {
    await api('/models/unload', { method: 'POST' });
    await refreshServer();
    await refresh();
  }));
  $('upscaler-load').addEventListener('click', guarded(async () => {
    if (!$('upscaler-model').value) throw new Error('No ESRGAN model in the esrgan folder.');
    const loaded = await api('/upscaler/load', { method: 'POST', body: { model_name: $('upscaler-model').value } });
    notify(`Upscaler ${loaded.model_name} loaded (x${loaded.upscale_factor})`, 'notice');
    await refreshServer();
  }));
  $('upscaler-unload').addEventListener('click', guarded(async () => {
    await api('/upscaler/unload', { method: 'POST' });
    await refreshServer();
  }));
  $('download-source').addEventListener('change', () => {
    for (const part of document.querySelectorAll('#download-form [data-source]')) part.hidden = part.dataset.source !== $('download-source').value;
  });
  $('download-form').addEventListener('submit', guarded(async (event) => {
    event.preventDefault();
    const source = $('download-source').value;
    const body = { source, model_type: $('download-type').value };
    if (source === 'url') body.url = $('download-url').value;
    if (source === 'huggingface') Object.assign(body, { repo_id: $('download-repo').value, filename: $('download-filename').value, revision: $('download-revision').value || 'main' });
    if (source === 'civitai') body.model_id = $('download-civitai').value;
    if ($('download-subfolder').value) body.subfolder = $('download-subfolder').value;
    const accepted = await api('/models/download', { method: 'POST', body });
    watch($('download-jobs'), accepted.download_job_id, `download (${accepted.source})`);
    if (accepted.hash_job_id) watch($('download-jobs'), accepted.hash_job_id, 'hash check');
  }));
  $('convert-form').addEventListener('submit', guarded(async (event) => {
    event.preventDefault();
    const accepted = await api('/convert', { method: 'POST', body: { input_path: $('convert-input').value, output_type: $('convert-type').value } });
    watch($('convert-jobs'), accepted.job_id, `→ ${accepted.output_path}`);
  }));
  document.addEventListener('server-state', () => {
    showLoaded();
    if (server.options && !$('convert-type').options.length) {
      fillSelect($('convert-type'), server.options.quantization_types.map((type) => [type.id, type.name]));
    }
  });
  live.on('model_loading_progress', onLoadingProgress);
  for (const event of ['job_progress', 'job_transfer_progress', 'job_status_changed']) live.on(event, onJobEvent);
}

export const show = refresh;
