// The Generate view: txt2img / img2img (with mask) / txt2vid, defaults from the loaded model's architecture (else
// the contract's, from GET /defaults), LoRA tags, seed, batch, upscale, prompt enhancement; then the job's progress,
// live preview and final images.

import { api, element, fetchDataUrl, guarded, isVideo, notify, outputUrl, readFile } from './api.js';
import * as live from './live.js';
import { createMask } from './mask.js';
import { currentPreset, modelFiles, server } from './state.js';

const $ = (id) => document.getElementById(id);
const NUMBER_FIELDS = ['width', 'height', 'steps', 'cfg_scale', 'batch_count', 'seed', 'strength', 'video_frames'];
let mask;
let defaultsFor;  // the model whose architecture defaults the form holds (undefined: none applied yet)
let formFilled = false;  // the fields no architecture changes hold the contract's defaults
let lastSeed = null;
let job = null;  // {id, startedAt} of the job this view follows
let restored = false;  // the saved form has been put back (once, after the first defaults)

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
  const state = { ...saved(), fields, mode: mode(), upscale: $('upscale').checked, model: defaultsFor ?? null, lastSeed, ...changes };
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
  if (state.jobId && !job) await reattach(state.jobId);
}

/** Shows a job queued before the reload: its progress while it runs, its result once it is done. */
async function reattach(jobId) {
  const current = await api(`/queue/${encodeURIComponent(jobId)}`).catch(() => null);
  if (!current) { save({ jobId: null }); return; }  // gone (deleted, pruned): nothing to show
  follow(jobId);
  if (['completed', 'failed', 'cancelled'].includes(current.status)) await finish(jobId);
  else if (current.status === 'processing' && current.progress?.total_steps) onProgress({ job_id: jobId, ...current.progress });
  else if (current.status === 'processing') showProgress('Starting', 0);
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
  $('size-hint').textContent = multiple
    ? `${server.architectures.current_architecture}: width and height must be multiples of ${multiple}.` : '';
  if (!restored) guarded(restore)();
  else save();
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
  $('results').replaceChildren();
  $('live-preview').hidden = true;
  $('preview-note').textContent = '';
  $('cancel-button').disabled = false;
  showProgress('Queued', 0);
}

async function finish(jobId) {
  const finished = await api(`/queue/${jobId}`);
  if (!job || job.id !== jobId) return;
  job = null;
  $('cancel-button').disabled = true;
  if (finished.params?.seed !== undefined) lastSeed = finished.params.seed;
  save();
  if (finished.status === 'completed') {
    showProgress(`Done: ${finished.outputs.length} file(s)`, 100);
    $('results').replaceChildren(...finished.outputs.map((path) => element('a', { href: outputUrl(path), target: '_blank', class: 'result' },
      isVideo(path) ? element('video', { src: outputUrl(path), controls: true, 'aria-label': path })
        : element('img', { src: outputUrl(path), alt: `Generated image ${path}` }))));
  } else if (finished.status === 'failed') {
    showProgress('Failed', 0);
    notify(`The job failed: ${finished.error || 'no reason given'}`);
  } else {
    showProgress('Cancelled', 0);
  }
}

function onProgress(data) {
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
  const accepted = await api(`/${mode()}`, { method: 'POST', body: requestBody() });
  follow(accepted.job_id);
  save({ jobId: accepted.job_id });
  showProgress(`Queued (position ${accepted.position})`, 0);
});

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
async function useInputImage(dataUrl) {
  setMode('img2img');
  const size = await mask.setImage(dataUrl);
  const multiple = currentPreset()?.sizeMultiple ?? 1;
  $('width').value = Math.max(multiple, Math.floor(size.width / multiple) * multiple);
  $('height').value = Math.max(multiple, Math.floor(size.height / multiple) * multiple);
  save();
}

/** "Send to img2img" from the gallery or queue. */
export async function sendToImg2img(url) {
  await useInputImage(await fetchDataUrl(url));
  location.hash = '#generate';
}

/** "Use these settings": a finished job's parameters into the form. */
export function applyParams(params, type) {
  if (['txt2img', 'img2img', 'txt2vid'].includes(type) && !document.querySelector(`input[value="${type}"]`).closest('label').hidden) setMode(type);
  for (const field of ['prompt', 'negative_prompt']) if (typeof params[field] === 'string') $(field).value = params[field];
  for (const field of NUMBER_FIELDS) if (typeof params[field] === 'number') $(field).value = params[field];
  if (params.sampler) $('sampler').value = params.sampler;
  $('scheduler').value = params.scheduler ?? '';
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
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', showMode);
  for (const field of ['width', 'height']) $(field).addEventListener('input', () => checkSize());
  $('init-image').addEventListener('change', guarded(async () => {
    const file = $('init-image').files[0];
    if (file) await useInputImage(await readFile(file));
  }));
  $('lora-insert').addEventListener('click', insertLora);
  $('seed-random').addEventListener('click', () => { $('seed').value = -1; save(); });
  $('seed-reuse').addEventListener('click', () => {
    if (lastSeed === null) notify('No finished job yet whose seed could be reused.', 'notice');
    else { $('seed').value = lastSeed; save(); }
  });
  $('cancel-button').addEventListener('click', guarded(async () => {
    if (job) await api(`/queue/${job.id}`, { method: 'DELETE' });
  }));
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
    if (job && data.job_id === job.id) {
      if (data.status === 'processing') showProgress('Starting', 0);
      if (['completed', 'failed', 'cancelled'].includes(data.status)) guarded(finish)(data.job_id);
    }
  });
  setInterval(guarded(pollWhileOffline), 1000);
  document.addEventListener('server-state', applyArchitecture);
  document.addEventListener('models-changed', guarded(loadLoras));
  showMode();
}

export async function show() {
  const [ollama] = await Promise.all([api('/ollama/status'), loadLoras()]);
  $('enhance').hidden = !ollama?.enabled;
}
