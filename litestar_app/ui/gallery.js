// The Gallery view: finished jobs' outputs newest first as thumbnails, a lightbox with each image's generation
// parameters, and "use these settings" / "send to img2img" into the Generate view.

import { api, element, fetchDataUrl, guarded, isVideo, notify, outputUrl, thumbUrl } from './api.js';
import * as live from './live.js';
import { applyParams, sendToImg2img } from './generate.js';
import { server } from './state.js';

const $ = (id) => document.getElementById(id);
const MEDIA = /\.(png|jpe?g|webp|gif|webm|mp4|avi)$/i;
const PAGE = 40;
let limit = PAGE;
let entries = [];  // {job, path} shown in the lightbox, in order
let index = 0;

function entriesOf(jobs) {
  return jobs.flatMap((job) => (job.outputs || []).filter((path) => MEDIA.test(path)).map((path) => ({ job, path })));
}

async function refresh() {
  const query = new URLSearchParams({ status: 'completed', limit: String(limit) });
  for (const type of ['txt2img', 'img2img', 'txt2vid', 'upscale']) query.append('type', type);
  const listing = await api(`/queue?${query}`);
  const jobs = listing.items.slice().sort((a, b) => (b.completed_at || '').localeCompare(a.completed_at || ''));
  const shown = entriesOf(jobs);
  $('gallery-grid').replaceChildren(...(shown.length ? shown.map((entry, position) => element('button', {
    type: 'button', class: 'gallery-item', 'aria-label': `Open ${entry.path}`,
    onclick: () => { entries = shown; showEntry(position); },
  }, element('img', { src: thumbUrl(entry.path), alt: entry.job.params?.prompt ?? entry.path, loading: 'lazy', width: 120, height: 120 })))
    : [element('p', { class: 'hint', text: 'No images yet: generate one.' })]));
  $('gallery-more').hidden = listing.items.length < limit;
}

function showEntry(position) {
  index = (position + entries.length) % entries.length;
  const { job, path } = entries[index];
  const url = outputUrl(path);
  $('lightbox-media').replaceChildren(isVideo(path)
    ? element('video', { src: url, controls: true, autoplay: true, 'aria-label': path })
    : element('img', { src: url, alt: job.params?.prompt ?? path }));
  showParams(job, path);
  $('lightbox-open').href = url;
  $('lightbox-img2img').disabled = isVideo(path);
  $('lightbox-upscale').disabled = isVideo(path) || !server.health?.upscaler_loaded;
  $('lightbox-use').disabled = !['txt2img', 'img2img', 'txt2vid'].includes(job.type);
  if (!$('lightbox').open) {
    $('lightbox').showModal();
    // Its own history entry (same URL), so that the browser's Back closes it instead of leaving the view.
    history.pushState({ lightbox: true }, '');
  }
}

// The readable summary of an output: what a person asks about an image. Every field stays under "All fields".
const SUMMARY = [
  ['Model', (job, path, config) => config?.model],
  ['Prompt', (job) => job.params?.prompt],
  ['Negative prompt', (job) => job.params?.negative_prompt],
  ['Seed', (job, path) => (Number.isInteger(job.params?.seed) && job.params.seed >= 0
    ? job.params.seed + Math.max(0, (job.outputs || []).indexOf(path)) : job.params?.seed)],
  ['Sampler', (job) => [job.params?.sampler, job.params?.scheduler].filter(Boolean).join(' · ')],
  ['Size', (job) => (job.params?.width ? `${job.params.width} × ${job.params.height}` : null)],
  ['Steps', (job) => job.params?.steps],
  ['CFG scale', (job) => job.params?.cfg_scale],
  ['Strength', (job) => (job.type === 'img2img' ? job.params?.strength : null)],
  ['Time', (job) => (job.started_at && job.completed_at
    ? `${((Date.parse(job.completed_at) - Date.parse(job.started_at)) / 1000).toFixed(1)} s` : null)],
  ['Type', (job) => job.type],
  ['File', (job, path) => path],
];
let shownFor = null;

function definitions(pairs) {
  return pairs.flatMap(([name, value]) => [element('dt', { text: name }),
    element('dd', { text: typeof value === 'object' ? JSON.stringify(value) : String(value) })]);
}

const present = (value) => value !== null && value !== undefined && value !== '' && !(Array.isArray(value) && !value.length);

function showParams(job, path, config = null) {
  shownFor = path;
  $('lightbox-params').replaceChildren(...definitions(SUMMARY.map(([name, read]) => [name, read(job, path, config)])
    .filter(([, value]) => present(value))));
  $('lightbox-raw').replaceChildren(...definitions(Object.entries({ job_id: job.job_id, ...(job.params || {}), ...(config ? { engine: config.engine } : {}) })
    .filter(([, value]) => present(value))));
  // The model a job ran on is in its config.json (written with every finished generation).
  if (!config && job.status === 'completed' && ['txt2img', 'img2img', 'txt2vid', 'upscale'].includes(job.type)) {
    api(`/output/${encodeURIComponent(job.job_id)}/config.json`).then((read) => {
      if (shownFor === path && read) showParams(job, path, read);
    }, () => {});
  }
}

/** Closes the lightbox (its 'close' handler drops its history entry); resolves once the browser is back on the
 * view's own entry, so that a navigation right after it is not undone. */
function closeLightbox() {
  if (!$('lightbox').open) return Promise.resolve();
  return new Promise((resolve) => {
    if (history.state?.lightbox) window.addEventListener('popstate', () => resolve(), { once: true });
    else resolve();
    $('lightbox').close();
  });
}

/** Opens the lightbox on one job's outputs (from the Queue view). */
export function openLightbox(job, position) {
  entries = entriesOf([job]);
  showEntry(position);
}

export function init() {
  $('lightbox-prev').addEventListener('click', () => showEntry(index - 1));
  $('lightbox-next').addEventListener('click', () => showEntry(index + 1));
  $('lightbox-close').addEventListener('click', closeLightbox);
  // However it closes (Close, Esc, an action), its history entry goes too; after Back there is none left.
  $('lightbox').addEventListener('close', () => { if (history.state?.lightbox) history.back(); });
  window.addEventListener('popstate', () => { if ($('lightbox').open) $('lightbox').close(); });
  $('lightbox').addEventListener('keydown', (event) => {
    if (event.key === 'ArrowLeft') showEntry(index - 1);
    if (event.key === 'ArrowRight') showEntry(index + 1);
  });
  $('lightbox-use').addEventListener('click', guarded(async () => {
    const { job } = entries[index];
    await closeLightbox();
    await applyParams(job.params || {}, job.type, job.job_id);
  }));
  $('lightbox-img2img').addEventListener('click', guarded(async () => {
    const { path } = entries[index];
    await closeLightbox();
    await sendToImg2img(outputUrl(path));
  }));
  $('lightbox-upscale').addEventListener('click', guarded(async () => {
    const { path } = entries[index];
    const image = (await fetchDataUrl(outputUrl(path))).split(',', 2)[1];
    const accepted = await api('/upscale', { method: 'POST', body: { image_base64: image } });
    notify(`Upscaling as job ${accepted.job_id}: it appears here when done.`, 'notice');
  }));
  $('gallery-more').addEventListener('click', guarded(async () => { limit += PAGE; await refresh(); }));
  live.on('job_status_changed', (data) => {
    if (data.status === 'completed' && !$('view-gallery').hidden) guarded(refresh)();
  });
}

export const show = refresh;
