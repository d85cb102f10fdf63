// The Queue view: jobs with status, progress and filters, updated live from the event stream; cancel, run
// again with the same parameters, and the outputs (opened in the gallery's lightbox).

import { api, element, fetchDataUrl, guarded, notify, outputUrl, thumbUrl } from './api.js';
import * as live from './live.js';
import { openLightbox } from './gallery.js';

const $ = (id) => document.getElementById(id);
const RUNNABLE = ['txt2img', 'img2img', 'txt2vid', 'upscale'];
const MIB = 1024 * 1024;
let refreshTimer = null;

function progressText(job) {
  const p = job.progress;
  if (!p || job.status !== 'processing') return '';
  if (job.type === 'download' || job.type === 'hash') return `${(p.percentage ?? 0).toFixed(0)}%`;
  return `image ${Math.min(p.current_image + 1, p.total_images)} of ${p.total_images} · step ${p.step}/${p.total_steps} · ${p.percentage.toFixed(0)}%`;
}

/** A saved input image as params show it: {path (relative to the job folder), width, height}. */
const isInputImage = (value) => value !== null && typeof value === 'object' && typeof value.path === 'string'
  && Number.isInteger(value.width) && Number.isInteger(value.height);

/** The job's params as a new request, its saved input images read back as base64. */
async function rerunBody(job) {
  const body = {};
  for (const [field, value] of Object.entries(job.params)) {
    const values = Array.isArray(value) ? value : [value];
    if (values.length && values.every(isInputImage)) {
      const images = await Promise.all(values.map(async (image) => (
        await fetchDataUrl(outputUrl(`${job.job_id}/${image.path}`))).split(',', 2)[1]));
      body[field] = Array.isArray(value) ? images : images[0];
    } else {
      body[field] = value;
    }
  }
  return body;
}

function jobItem(job) {
  const progress = element('progress', { max: 100, value: job.progress?.percentage ?? 0, 'aria-label': `Progress of job ${job.job_id}` });
  const item = element('li', { class: `job ${job.status}`, 'data-job-id': job.job_id },
    element('div', { class: 'job-head' },
      element('span', { class: `badge ${job.status}`, text: job.status }),
      element('strong', { text: job.type }),
      element('time', { datetime: job.created_at, text: new Date(job.created_at).toLocaleString() })),
    element('p', { class: 'job-prompt', text: job.params?.prompt ?? job.params?.input_path ?? job.params?.url ?? job.params?.repo_id ?? '' }),
    element('p', { class: 'job-progress hint', text: progressText(job) }));
  if (job.status === 'processing') item.append(progress);
  if (job.error) item.append(element('p', { class: 'error-text', text: job.error }));
  const outputs = (job.outputs || []).filter((path) => /\.(png|jpe?g|webp|gif|webm|mp4|avi)$/i.test(path));
  if (outputs.length) {
    item.append(element('div', { class: 'job-outputs' }, ...outputs.map((path, index) => element('button', {
      type: 'button', class: 'thumb-button', 'aria-label': `Open output ${path}`, onclick: () => openLightbox(job, index),
    }, element('img', { src: thumbUrl(path), alt: '', loading: 'lazy', width: 60, height: 60 })))));
  }
  const actions = element('div', { class: 'row job-actions' });
  if (['pending', 'processing'].includes(job.status)) {
    actions.append(element('button', { type: 'button', text: 'Cancel', onclick: guarded(async () => {
      await api(`/queue/${job.job_id}`, { method: 'DELETE' });
      scheduleRefresh();
    }) }));
  }
  if (RUNNABLE.includes(job.type) && job.params) {
    actions.append(element('button', { type: 'button', text: 'Run again', onclick: guarded(async () => {
      const accepted = await api(`/${job.type}`, { method: 'POST', body: await rerunBody(job) });
      notify(`Queued again as ${accepted.job_id}`, 'notice');
      scheduleRefresh();
    }) }));
  }
  if (outputs.length || (job.outputs || []).length) {
    actions.append(element('a', { href: `/output/${encodeURIComponent(job.job_id)}/`, text: 'Output folder' }));
  }
  item.append(actions);
  return item;
}

async function refresh() {
  const query = new URLSearchParams({ limit: '50' });
  if ($('queue-status').value) query.append('status', $('queue-status').value);
  if ($('queue-type').value) query.append('type', $('queue-type').value);
  if ($('queue-search').value) query.set('search', $('queue-search').value);
  const listing = await api(`/queue?${query}`);
  $('queue-counts').textContent = `${listing.pending_count} pending · ${listing.processing_count} running · `
    + `${listing.completed_count} completed · ${listing.failed_count} failed`;
  const items = listing.items.slice().sort((a, b) => b.created_at.localeCompare(a.created_at));
  $('queue-list').replaceChildren(...(items.length ? items.map(jobItem) : [element('li', { class: 'hint', text: 'No jobs.' })]));
}

function scheduleRefresh() {
  if ($('view-queue').hidden) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(guarded(refresh), 150);
}

function onProgress(data) {
  const item = document.querySelector(`#queue-list li[data-job-id="${CSS.escape(data.job_id)}"]`);
  if (!item) { scheduleRefresh(); return; }
  item.querySelector('.job-progress').textContent = progressText({ status: 'processing', progress: data });
  const bar = item.querySelector('progress');
  if (bar) bar.value = data.percentage;
}

/** A download's progress in bytes (job_transfer_progress); percentage is null while the size is unknown. */
function onTransferProgress(data) {
  const item = document.querySelector(`#queue-list li[data-job-id="${CSS.escape(data.job_id)}"]`);
  if (!item) { scheduleRefresh(); return; }
  const done = (data.bytes_done / MIB).toFixed(1);
  item.querySelector('.job-progress').textContent = data.bytes_total
    ? `${done} of ${(data.bytes_total / MIB).toFixed(1)} MiB · ${data.percentage.toFixed(0)}%` : `${done} MiB`;
  const bar = item.querySelector('progress');
  if (bar && data.percentage !== null) bar.value = data.percentage;
}

export function init() {
  for (const id of ['queue-status', 'queue-type']) $(id).addEventListener('change', scheduleRefresh);
  $('queue-search').addEventListener('input', scheduleRefresh);
  $('queue-filters').addEventListener('submit', (event) => event.preventDefault());
  for (const event of ['job_added', 'job_status_changed', 'job_cancelled']) live.on(event, scheduleRefresh);
  live.on('job_progress', (data) => { if (!$('view-queue').hidden) onProgress(data); });
  live.on('job_transfer_progress', (data) => { if (!$('view-queue').hidden) onTransferProgress(data); });
}

export const show = refresh;
