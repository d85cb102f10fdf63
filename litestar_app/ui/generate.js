// The Generate view: txt2img / img2img (with mask) / txt2vid, defaults from the loaded model's architecture (else
// the contract's, from GET /defaults), LoRA tags, seed, batch, upscale, prompt enhancement; then the job's progress,
// live preview and final images, and a strip of every job this browser queued (kept across reloads).

import { api, element, fetchDataUrl, guarded, isVideo, notify, outputUrl, readFile, thumbUrl } from './api.js';
import * as live from './live.js';
import { createMask } from './mask.js';
import { openLightbox } from './gallery.js';
import { currentPreset, modelFiles, server } from './state.js';

const $ = (id) => document.getElementById(id);
const NUMBER_FIELDS = ['width', 'height', 'steps', 'cfg_scale', 'batch_count', 'seed', 'strength', 'video_frames'];
let mask;
let defaultsFor;  // the model whose architecture defaults the form holds (undefined: none applied yet)
let formFilled = false;  // the fields no architecture changes hold the contract's defaults
let lastSeed = null;
let job = null;  // {id, startedAt} of the job the action bar follows
let restored = false;  // the saved form has been put back (once, after the first defaults)
let sizeNote = '';  // the architecture's size rule, shown under the form while the size keeps it
// The jobs this browser queued, newest first: {job_id, status, type, params, outputs, progress, position, error}.
// Their ids are kept in localStorage; after a reload each is fetched again and followed until it ends.
let session = [];
const SESSION_SIZE = 12;
const ENDED = ['completed', 'failed', 'cancelled'];
const GENERATING = ['txt2img', 'img2img', 'txt2vid', 'upscale'];  // the generation lane, which `position` counts

// The form and the job this browser queued last, kept in localStorage so that a reload (or a second tab) comes
// back to them. Sizes, steps, CFG and sampler are the loaded model's: they come back only for the same model.
const STORAGE_KEY = 'sdcpp-restapi.generate';
const TEXT_FIELDS = ['prompt', 'negative_prompt'];
const MODEL_FIELDS = ['width', 'height', 'steps', 'cfg_scale', 'sampler', 'scheduler', 'video_frames'];
const FREE_FIELDS = ['batch_count', 'seed', 'strength', 'lora-weight'];

function saved() {
  try { return JSON.parse(localStorage.getItem(STORAGE_KEY)) ?? {}; } catch { return {}; }
}

function save(changes = {}) {
  if (!restored) return;  // nothing overwrites the saved form before it has been put back
  const fields = {};
  for (const field of [...TEXT_FIELDS, ...MODEL_FIELDS, ...FREE_FIELDS]) fields[field] = $(field).value;
  const state = { ...saved(), fields, mode: mode(), upscale: $('upscale').checked, model: defaultsFor ?? null, lastSeed,
    session: session.map((entry) => entry.job_id), ...changes };
  try { localStorage.setItem(STORAGE_KEY, JSON.stringify(state)); } catch { /* storage full or off: not kept */ }
}

/** Puts the saved form back over the model's defaults, then follows the job this browser queued last. */
async function restore() {
  restored = true;
  const state = saved();
  const fields = state.fields ?? {};
  const sameModel = state.model === (defaultsFor ?? null);
  for (const field of [...TEXT_FIELDS, ...FREE_FIELDS, ...(sameModel ? MODEL_FIELDS : [])]) {
    if (typeof fields[field] === 'string' && fields[field] !== '') $(field).value = fields[field];
  }
  // img2img's input image is not kept (too large for localStorage): that mode comes back without it only by choice.
  if (state.mode && state.mode !== 'img2img' && !document.querySelector(`input[value="${state.mode}"]`).closest('label').hidden) setMode(state.mode);
  if (state.upscale && !$('upscale').disabled) $('upscale').checked = true;
  if (Number.isInteger(state.lastSeed)) lastSeed = state.lastSeed;
  showSizePresets();
  const ids = Array.isArray(state.session) ? state.session : (state.jobId ? [state.jobId] : []);
  if (ids.length && !session.length) await reattach(ids);
}

/** The jobs queued before the reload, fetched again (those gone are dropped): the strip shows them, the action bar
 * follows the first unfinished one, else shows the newest finished one's result. */
async function reattach(ids) {
  // Placeholders first, so that the status events arriving meanwhile find their jobs.
  session = ids.map((id) => ({ job_id: id, status: 'pending', outputs: [] }));
  const found = await Promise.all(ids.map((id) => api(`/queue/${encodeURIComponent(id)}`).catch(() => null)));
  session = session.filter((entry, index) => {
    if (!found[index]) return false;  // gone (deleted, pruned): nothing to show
    if (!ENDED.includes(entry.status)) Object.assign(entry, found[index]);  // else its event was newer
    return true;
  });
  save({ jobId: undefined });
  renderSession();
  const newestEnded = session.find((entry) => ENDED.includes(entry.status));
  if (newestEnded) showResult(newestEnded);
  followNext();
  await refreshPositions();
}

const sessionEntry = (jobId) => session.find((entry) => entry.job_id === jobId);

/** The strip of this session's jobs: status, progress or position, seed, the results as thumbnails. */
function renderSession() {
  const strip = $('session-jobs');
  $('session-title').hidden = $('session-clear').hidden = !session.length;
  strip.replaceChildren(...session.map((entry) => {
    const outputs = (entry.outputs || []).filter((path) => !isVideo(path));
    const seed = entry.params?.seed;
    return element('li', { class: `session-job ${entry.status}`, 'data-job-id': entry.job_id },
      element('div', { class: 'job-head' },
        element('span', { class: `badge ${entry.status}`, text: entry.status }),
        element('span', { class: 'hint', text: statusText(entry) }),
        seed !== undefined && seed >= 0 ? element('button', { type: 'button', class: 'link', text: `seed ${seed}`,
          'aria-label': `Use seed ${seed}`, onclick: () => { $('seed').value = seed; save(); } }) : null),
      element('p', { class: 'job-prompt', text: entry.params?.prompt ?? '' }),
      outputs.length ? element('div', { class: 'job-outputs' }, ...outputs.map((path, index) => element('button', {
        type: 'button', class: 'thumb-button', 'aria-label': `Open result ${path}`,
        onclick: () => { openLightbox(entry, index); },
      }, element('img', { src: thumbUrl(path), alt: '', loading: 'lazy', width: 56, height: 56 })))) : null,
      element('div', { class: 'row job-actions' },
        ENDED.includes(entry.status) ? null : element('button', { type: 'button', text: 'Cancel', 'aria-label': `Cancel job ${entry.job_id}`,
          onclick: guarded(() => api(`/queue/${entry.job_id}`, { method: 'DELETE' })) }),
        entry.params ? element('button', { type: 'button', text: 'Use settings', 'aria-label': `Use the settings of job ${entry.job_id}`,
          onclick: guarded(() => applyParams(entry.params, entry.type, entry.job_id)) }) : null));
  }));
}

function statusText(entry) {
  if (entry.status === 'pending') return entry.position ? `Queued (position ${entry.position})` : 'Queued';
  if (entry.status === 'processing') {
    const p = entry.progress;
    return p?.total_steps ? `image ${Math.min(p.current_image + 1, p.total_images)} of ${p.total_images} · step ${p.step}/${p.total_steps}` : 'Starting';
  }
  if (entry.status === 'completed') return `${entry.outputs?.length ?? 0} file(s)`;
  if (entry.status === 'cancelled') return entry.outputs?.length ? `cancelled, kept ${entry.outputs.length} file(s)` : 'cancelled';
  return entry.error || entry.status;
}

/** Where each pending session job stands: the pending generation jobs queued before it, plus one. */
async function refreshPositions() {
  const waiting = session.filter((entry) => entry.status === 'pending');
  if (!waiting.length) return;
  const query = new URLSearchParams({ status: 'pending', limit: '500' });
  for (const type of GENERATING) query.append('type', type);
  const pending = (await api(`/queue?${query}`)).items;
  for (const entry of waiting) {
    const mine = pending.find((other) => other.job_id === entry.job_id);
    if (!mine) continue;  // started meanwhile: its status event follows
    entry.position = pending.filter((other) => other.created_at < mine.created_at).length + 1;
  }
  renderSession();
  const followed = job && sessionEntry(job.id);
  if (followed?.status === 'pending') showProgress(statusText(followed), 0);
}

let positionsTimer = null;
function schedulePositions() {
  clearTimeout(positionsTimer);
  positionsTimer = setTimeout(guarded(refreshPositions), 150);
}

/** The action bar follows the session's running job, else its oldest waiting one. */
function followNext() {
  if (job) return;
  const open = session.filter((entry) => !ENDED.includes(entry.status));
  const next = open.find((entry) => entry.status === 'processing') ?? open[open.length - 1];
  if (!next) return;
  follow(next.job_id);
  if (next.status === 'processing' && next.progress?.total_steps) onProgress({ job_id: next.job_id, ...next.progress });
  else showProgress(statusText(next), 0);
}

const mode = () => document.querySelector('input[name="mode"]:checked').value;

function setMode(value) {
  document.querySelector(`input[name="mode"][value="${value}"]`).checked = true;
  showMode();
}

function showMode() {
  $('img2img-fields').hidden = mode() !== 'img2img';
  $('video-fields').hidden = mode() !== 'txt2vid';
}

/** The loaded architecture's defaults, applied once per loaded model so that the person's edits stay. */
function applyArchitecture() {
  const preset = currentPreset();
  const options = server.options;
  if (options && !$('sampler').options.length) {
    $('sampler').append(...options.samplers.map((name) => element('option', { text: name })));
    $('scheduler').append(...options.schedulers.map((name) => element('option', { text: name })));
  }
  const contract = server.defaults;
  if (!formFilled) {
    formFilled = true;
    $('batch_count').value = contract.txt2img.batch_count;
    $('seed').value = contract.txt2img.seed;
    $('strength').value = contract.img2img.strength;
    $('video_frames').value = contract.txt2vid.video_frames;
  }
  const video = Boolean(preset?.generationDefaults?.video_frames);
  $('mode-txt2vid').hidden = !video;
  if (!video && mode() === 'txt2vid') setMode('txt2img');
  const health = server.health;
  $('upscale').disabled = !health?.upscaler_loaded;
  if ($('upscale').disabled) $('upscale').checked = false;
  $('upscaler-name').textContent = health?.upscaler_loaded ? `(${health.upscaler_name})` : '(none loaded)';
  $('model-hint').hidden = Boolean(health?.model_loaded || health?.model_loading);
  const model = health?.model_name ?? null;
  if (model === defaultsFor) return;
  defaultsFor = model;
  // No model (or an unrecognised one): the contract's own request defaults.
  const defaults = preset?.generationDefaults ?? contract.txt2img;
  for (const field of ['width', 'height', 'steps', 'cfg_scale', 'video_frames']) {
    if (defaults[field] !== undefined) $(field).value = defaults[field];
  }
  $('sampler').value = defaults.sampler;
  $('scheduler').value = preset?.generationDefaults?.scheduler ?? '';  // else the model default: the server's choice
  const multiple = preset?.sizeMultiple;
  $('width').step = $('height').step = multiple ?? 1;
  showSizePresets();
  sizeNote = multiple ? `${server.architectures.current_architecture}: width and height must be multiples of ${multiple}.` : '';
  $('size-hint').textContent = sizeNote;
  if (!restored) guarded(restore)();
  else save();
}

// Aspect ratios offered as presets, each at about the architecture's default area, on its size multiple.
const ASPECTS = [[1, 1], [4, 3], [3, 4], [3, 2], [2, 3], [16, 9], [9, 16]];

function sizePresets() {
  const defaults = currentPreset()?.generationDefaults ?? server.defaults?.txt2img;
  const multiple = currentPreset()?.sizeMultiple ?? 8;
  if (!defaults?.width || !defaults?.height) return [];
  const area = defaults.width * defaults.height;
  return ASPECTS.map(([w, h]) => {
    const scale = Math.sqrt(area / (w * h));
    const round = (value) => Math.max(multiple, Math.round(value / multiple) * multiple);
    return { label: `${w}:${h}`, width: round(w * scale), height: round(h * scale) };
  });
}

function showSizePresets() {
  const presets = sizePresets();
  const current = `${$('width').value}x${$('height').value}`;
  $('size-preset').replaceChildren(element('option', { value: '', text: 'custom' }),
    ...presets.map((preset) => element('option', { value: `${preset.width}x${preset.height}`, text: `${preset.label} · ${preset.width} × ${preset.height}` })));
  $('size-preset').value = presets.some((preset) => `${preset.width}x${preset.height}` === current) ? current : '';
}

/** Refuses a size the architecture would round, naming what it would become. */
function checkSize() {
  const multiple = currentPreset()?.sizeMultiple;
  let ok = true;
  for (const field of ['width', 'height']) {
    const input = $(field);
    const value = Number(input.value);
    const message = multiple && value % multiple
      ? `${field} ${value} is not a multiple of ${multiple}: ${server.architectures.current_architecture} would make it ${Math.ceil(value / multiple) * multiple}`
      : '';
    input.setCustomValidity(message);
    if (message) { ok = false; $('size-hint').textContent = message; }
  }
  if (ok) $('size-hint').textContent = sizeNote;  // fixed: the refusal goes, the rule stays
  showSizePresets();
  return ok;
}

function requestBody() {
  const body = {
    prompt: $('prompt').value,
    negative_prompt: $('negative_prompt').value,
    sampler: $('sampler').value,
  };
  for (const field of ['width', 'height', 'steps', 'cfg_scale', 'batch_count', 'seed']) body[field] = Number($(field).value);
  if ($('scheduler').value) body.scheduler = $('scheduler').value;
  if ($('upscale').checked) body.upscale = true;
  if (mode() === 'img2img') {
    if (!mask.hasImage()) throw new Error('Choose an input image for image to image.');
    body.init_image_base64 = mask.imageBase64();
    body.strength = Number($('strength').value);
    const painted = mask.maskBase64();
    if (painted) body.mask_image_base64 = painted;
  }
  if (!$('control-preview').hidden && mode() !== 'txt2vid') {
    body.control_image_base64 = $('control-preview').src.split(',', 2)[1];
    body.control_strength = Number($('control_strength').value);
  }
  if (mode() === 'txt2vid') {
    body.video_frames = Number($('video_frames').value);
    delete body.batch_count;
  }
  return body;
}

function showProgress(text, percentage) {
  $('progress-label').textContent = text;
  $('progress').value = percentage;
}

function follow(jobId) {
  job = { id: jobId, startedAt: null };
  $('live-preview').hidden = true;
  $('preview-note').textContent = '';
  $('cancel-button').disabled = false;
  showProgress('Queued', 0);
}

/** A finished job's images in the output panel (a cancelled batch's kept ones too); the live preview goes. */
function showResult(finished) {
  $('live-preview').hidden = true;
  $('preview-note').textContent = '';
  const outputs = finished.outputs || [];
  if (finished.status === 'completed') showProgress(`Done: ${outputs.length} file(s)`, 100);
  else if (finished.status === 'failed') showProgress('Failed', 0);
  else showProgress(outputs.length ? `Cancelled: kept ${outputs.length} finished file(s)` : 'Cancelled', 0);
  if (finished.status === 'failed') return;
  if (!outputs.length && finished.status === 'cancelled') return;
  $('results').replaceChildren(...outputs.map((path, index) => element('figure', { class: 'result' },
    element('a', { href: outputUrl(path), target: '_blank' },
      isVideo(path) ? element('video', { src: outputUrl(path), controls: true, 'aria-label': path })
        : element('img', { src: outputUrl(path), alt: `Generated image ${path}` })),
    element('figcaption', { class: 'hint', text: Number.isInteger(finished.params?.seed) && !isVideo(path)
      ? `seed ${finished.params.seed + index}` : path.split('/').pop() }))));
}

async function finish(jobId) {
  const finished = await api(`/queue/${jobId}`);
  const entry = sessionEntry(jobId);
  if (entry) Object.assign(entry, finished);
  renderSession();
  if (!job || job.id !== jobId) return;
  job = null;
  $('cancel-button').disabled = true;
  if (Number.isInteger(finished.params?.seed) && finished.params.seed >= 0) lastSeed = finished.params.seed;
  save();
  showResult(finished);
  if (finished.status === 'failed') notify(`The job failed: ${finished.error || 'no reason given'}`);
  followNext();
}

function onProgress(data) {
  const entry = sessionEntry(data.job_id);
  if (entry) {
    entry.status = 'processing';
    entry.progress = data;
    const hint = document.querySelector(`#session-jobs li[data-job-id="${CSS.escape(data.job_id)}"] .job-head .hint`);
    if (hint) hint.textContent = statusText(entry);
  }
  if (!job || data.job_id !== job.id) return;
  job.startedAt ??= performance.now();
  const percentage = data.percentage ?? 0;
  const elapsed = (performance.now() - job.startedAt) / 1000;
  const left = percentage > 0 ? elapsed * (100 - percentage) / percentage : null;
  const image = Math.min((data.current_image ?? 0) + 1, data.total_images ?? 1);
  showProgress(`Image ${image} of ${data.total_images ?? 1} · step ${data.step}/${data.total_steps} · ${percentage.toFixed(0)}%`
    + (left !== null ? ` · about ${Math.ceil(left)} s left` : ''), percentage);
}

function onPreview(data) {
  if (!job || data.job_id !== job.id) return;
  $('live-preview').src = data.image;
  $('live-preview').hidden = false;
  $('preview-note').textContent = `Preview at step ${data.step} (${data.mode})${data.note ? `: ${data.note}` : ''}`;
}

/** Polls the followed job while the event stream is down, so results still appear. */
async function pollWhileOffline() {
  if (job && !live.connected()) {
    const current = await api(`/queue/${job.id}`);
    if (['completed', 'failed', 'cancelled'].includes(current.status)) await finish(current.job_id);
    else if (current.status === 'processing') onProgress({ job_id: current.job_id, ...current.progress });
  }
}

const submit = guarded(async (event) => {
  event.preventDefault();
  if (!checkSize() || !$('generate-form').reportValidity()) return;
  const body = requestBody();
  const accepted = await api(`/${mode()}`, { method: 'POST', body });
  rememberPrompt(body.prompt);
  const { init_image_base64: _image, mask_image_base64: _mask, ...params } = body;
  session.unshift({ job_id: accepted.job_id, status: 'pending', type: mode(), params, outputs: [], position: accepted.position });
  session = session.slice(0, SESSION_SIZE);
  save({ jobId: undefined });
  renderSession();
  if (!job) {
    follow(accepted.job_id);
    showProgress(`Queued (position ${accepted.position})`, 0);
  }
});

// Prompt history: the last prompts this browser generated with, newest first.
const PROMPTS_KEY = 'sdcpp-restapi.prompts';
function prompts() {
  try { return JSON.parse(localStorage.getItem(PROMPTS_KEY)) ?? []; } catch { return []; }
}

function rememberPrompt(prompt) {
  if (!prompt.trim()) return;
  const list = [prompt, ...prompts().filter((other) => other !== prompt)].slice(0, 30);
  try { localStorage.setItem(PROMPTS_KEY, JSON.stringify(list)); } catch { /* not kept */ }
  showPromptHistory();
}

function showPromptHistory() {
  const list = prompts();
  $('prompt-history').replaceChildren(element('option', { value: '', text: list.length ? 'Recent prompts…' : 'No recent prompts' }),
    ...list.map((prompt, index) => element('option', { value: String(index), text: prompt.length > 70 ? `${prompt.slice(0, 67)}…` : prompt })));
}

async function loadLoras() {
  const loras = await modelFiles('?type=lora');
  const select = $('lora-name');
  select.replaceChildren(...(loras.length ? loras.map((lora) => element('option', { value: lora.name.replace(/\.[^.]+$/, ''), text: lora.name }))
    : [element('option', { value: '', text: '(none available)' })]));
}

function insertLora() {
  const name = $('lora-name').value;
  if (!name) return;
  const prompt = $('prompt');
  const tag = `<lora:${name}:${Number($('lora-weight').value)}>`;
  const at = prompt.selectionEnd ?? prompt.value.length;
  const before = prompt.value.slice(0, at);
  prompt.value = `${before}${before && !before.endsWith(' ') ? ' ' : ''}${tag}${prompt.value.slice(at)}`;
  prompt.focus();
}

/** Loads an image into img2img and sizes the form after it (rounded down to the architecture's multiple). */
export async function useInputImage(dataUrl) {
  setMode('img2img');
  const size = await mask.setImage(dataUrl);
  const multiple = currentPreset()?.sizeMultiple ?? 1;
  $('width').value = Math.max(multiple, Math.floor(size.width / multiple) * multiple);
  $('height').value = Math.max(multiple, Math.floor(size.height / multiple) * multiple);
  save();
}

/** A ControlNet image (chosen, dropped or pasted); null removes it. */
export async function useControlImage(dataUrl) {
  const preview = $('control-preview');
  if (!dataUrl) {
    preview.removeAttribute('src');
    preview.hidden = true;
    $('control-state').textContent = '(none)';
    $('control-image').value = '';
    return;
  }
  await new Promise((resolve, reject) => {
    preview.onload = resolve;
    preview.onerror = () => reject(new Error('The browser cannot read that file as an image.'));
    preview.src = dataUrl;
  });
  preview.hidden = false;
  $('control-fields').open = true;
  $('control-state').textContent = `(${preview.naturalWidth} × ${preview.naturalHeight})`;
}

/** "Send to img2img" from the gallery or queue. */
export async function sendToImg2img(url) {
  await useInputImage(await fetchDataUrl(url));
  location.hash = '#generate';
}

/** A job's saved input image ({path, width, height} in its params) as a data: URL, or null. */
async function savedInput(jobId, value) {
  if (!jobId || !value || typeof value.path !== 'string') return null;
  return fetchDataUrl(outputUrl(`${jobId}/${value.path}`));
}

/** "Use these settings": a finished job's parameters into the form; an img2img job's input image and mask too. */
export async function applyParams(params, type, jobId) {
  if (['txt2img', 'img2img', 'txt2vid'].includes(type) && !document.querySelector(`input[value="${type}"]`).closest('label').hidden) setMode(type);
  if (type === 'img2img') {
    const image = await savedInput(jobId, params.init_image_base64);
    if (image) await useInputImage(image);
    const painted = await savedInput(jobId, params.mask_image_base64);
    if (painted) await mask.setMask(painted);
  }
  for (const field of ['prompt', 'negative_prompt']) if (typeof params[field] === 'string') $(field).value = params[field];
  for (const field of NUMBER_FIELDS) if (typeof params[field] === 'number') $(field).value = params[field];
  if (params.sampler) $('sampler').value = params.sampler;
  $('scheduler').value = params.scheduler ?? '';
  checkSize();
  save();
  location.hash = '#generate';
}

export function init() {
  const form = $('generate-form');
  mask = createMask({ stage: $('mask-stage'), image: $('init-preview'), canvas: $('mask-canvas'), brushSize: $('brush-size'),
    erase: $('mask-erase'), invertButton: $('mask-invert'), clearButton: $('mask-clear') });
  form.addEventListener('submit', submit);
  form.addEventListener('input', () => save());
  form.addEventListener('change', () => save());
  form.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    if (event.ctrlKey || event.metaKey) { event.preventDefault(); form.requestSubmit(); }
    else if (event.target.matches('input')) event.preventDefault();  // Enter in a field never generates by surprise
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', showMode);
  for (const field of ['width', 'height']) $(field).addEventListener('input', () => checkSize());
  $('init-image').addEventListener('change', guarded(async () => {
    const file = $('init-image').files[0];
    if (file) await useInputImage(await readFile(file));
  }));
  $('lora-insert').addEventListener('click', insertLora);
  $('control-image').addEventListener('change', guarded(async () => {
    const file = $('control-image').files[0];
    if (file) await useControlImage(await readFile(file));
  }));
  $('control-clear').addEventListener('click', () => useControlImage(null));
  $('size-preset').addEventListener('change', () => {
    const [width, height] = $('size-preset').value.split('x');
    if (!width) return;
    $('width').value = width;
    $('height').value = height;
    checkSize();
    save();
  });
  $('size-swap').addEventListener('click', () => {
    [$('width').value, $('height').value] = [$('height').value, $('width').value];
    checkSize();
    save();
  });
  $('prompt-history').addEventListener('change', () => {
    const picked = $('prompt-history').value;
    $('prompt-history').value = '';
    const chosen = picked === '' ? undefined : prompts()[Number(picked)];
    if (chosen !== undefined) { $('prompt').value = chosen; save(); }
  });
  showPromptHistory();
  $('seed-random').addEventListener('click', () => { $('seed').value = -1; save(); });
  $('seed-reuse').addEventListener('click', () => {
    if (lastSeed === null) notify('No finished job yet whose seed could be reused.', 'notice');
    else { $('seed').value = lastSeed; save(); }
  });
  $('cancel-button').addEventListener('click', guarded(async () => {
    if (job) await api(`/queue/${job.id}`, { method: 'DELETE' });
  }));
  $('session-clear').addEventListener('click', () => {
    session = session.filter((entry) => !ENDED.includes(entry.status));
    save();
    renderSession();
  });
  $('enhance').addEventListener('click', guarded(async () => {
    $('enhance').disabled = true;
    try {
      const answer = await api('/ollama/enhance', { method: 'POST', body: { prompt: $('prompt').value } });
      $('prompt').value = answer.enhanced_prompt;
    } finally {
      $('enhance').disabled = false;
    }
  }));
  live.on('job_progress', onProgress);
  live.on('job_preview', onPreview);
  live.on('job_status_changed', (data) => {
    const entry = sessionEntry(data.job_id);
    if (entry) {
      if (data.status === 'processing' && entry.status === 'pending') { entry.status = 'processing'; renderSession(); }
      if (ENDED.includes(data.status)) guarded(finish)(data.job_id);
    }
    if (job && data.job_id === job.id && data.status === 'processing') showProgress('Starting', 0);
    schedulePositions();
  });
  live.on('job_added', schedulePositions);
  live.on('job_cancelled', schedulePositions);
  setInterval(guarded(pollWhileOffline), 1000);
  document.addEventListener('server-state', applyArchitecture);
  document.addEventListener('models-changed', guarded(loadLoras));
  showMode();
}

export async function show() {
  const [ollama] = await Promise.all([api('/ollama/status'), loadLoras()]);
  // Offered only while Ollama answers: a click that can only fail is no offer.
  $('enhance').hidden = !(ollama?.enabled && ollama?.connected);
}
