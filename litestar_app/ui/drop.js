// Image habits: drop or paste an image into img2img (the input image under the mask editor) or ControlNet; a file
// dropped anywhere else never navigates away from the page: an image opens a dialog that reads the generation
// parameters from its PNG text (sd.cpp's and AUTOMATIC1111's `parameters`, ComfyUI's `prompt` graph when it is
// simple) and offers to use them, or the image itself.

import { element, guarded, notify, readFile } from './api.js';
import { applyParams, useControlImage, useInputImage } from './generate.js';
import { server } from './state.js';

const $ = (id) => document.getElementById(id);
const IMAGE = /^image\/(png|jpeg|webp)$/;
let dropped = null;  // {file, params} shown in the dialog

/** The text chunks of a PNG (tEXt, iTXt, zTXt) as {keyword: text}; {} for anything else. */
export async function pngText(buffer) {
  const bytes = new Uint8Array(buffer);
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 8 || signature.some((value, i) => bytes[i] !== value)) return {};
  const view = new DataView(buffer);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8');
  const texts = {};
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = view.getUint32(at);
    const type = latin1.decode(bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, Math.min(at + 8 + length, bytes.length));
    at += 12 + length;
    if (type === 'IEND') break;
    if (!['tEXt', 'iTXt', 'zTXt'].includes(type)) continue;
    const nul = data.indexOf(0);
    if (nul < 0) continue;
    const keyword = latin1.decode(data.subarray(0, nul));
    if (type === 'tEXt') texts[keyword] = latin1.decode(data.subarray(nul + 1));
    else if (type === 'zTXt') texts[keyword] = latin1.decode(await inflate(data.subarray(nul + 2)));
    else {
      const compressed = data[nul + 1] === 1;
      let rest = data.subarray(nul + 3);
      for (let skip = 0; skip < 2; skip += 1) rest = rest.subarray(rest.indexOf(0) + 1);  // language, translated keyword
      texts[keyword] = utf8.decode(compressed ? await inflate(rest) : rest);
    }
  }
  return texts;
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const simplified = (name) => String(name).toLowerCase().replace(/[\s_]/g, '').replace(/karras$/, '');

/** A sampler or scheduler name as this server spells it (A1111's "Euler a" is sd.cpp's euler_a), or undefined. */
function ours(name, known) {
  if (!name) return undefined;
  return (known ?? []).find((candidate) => simplified(candidate) === simplified(name));
}

/** sd.cpp's and AUTOMATIC1111's `parameters` text: the prompt, "Negative prompt: ...", then "Steps: 20, ...". */
export function parseParameters(text) {
  const lines = text.replace(/\r/g, '').split('\n');
  const settingsAt = lines.findLastIndex((line) => /(^|,\s*)Steps: \d+/.test(line));
  const head = settingsAt >= 0 ? lines.slice(0, settingsAt) : lines;
  const negativeAt = head.findIndex((line) => line.startsWith('Negative prompt:'));
  const params = {
    prompt: (negativeAt >= 0 ? head.slice(0, negativeAt) : head).join('\n').trim(),
    negative_prompt: negativeAt >= 0 ? [head[negativeAt].slice(16), ...head.slice(negativeAt + 1)].join('\n').trim() : '',
  };
  const fields = {};
  const settings = settingsAt >= 0 ? lines.slice(settingsAt).join(', ') : '';
  for (const match of settings.matchAll(/\s*([^:,]+):\s*("(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^,]*)\s*(?:,|$)/g)) {
    fields[match[1].trim()] = match[2].trim();
  }
  const number = (value, parse) => (value === undefined || Number.isNaN(parse(value)) ? undefined : parse(value));
  params.steps = number(fields.Steps, (value) => parseInt(value, 10));
  params.cfg_scale = number(fields['CFG scale'], parseFloat);
  params.seed = number(fields.Seed, (value) => parseInt(value, 10));
  const size = /^(\d+)x(\d+)$/.exec(fields.Size ?? '');
  if (size) [params.width, params.height] = [Number(size[1]), Number(size[2])];
  params.sampler = ours(fields.Sampler, server.options?.samplers);
  params.scheduler = ours(fields['Schedule type'] ?? fields.Scheduler, server.options?.schedulers);
  params.model = fields.Model;
  return cleaned(params);
}

/** ComfyUI's `prompt` graph, when it has one KSampler fed by text encoders and an empty latent. */
export function parseComfyPrompt(text) {
  let graph;
  try { graph = JSON.parse(text); } catch { return null; }
  if (!graph || typeof graph !== 'object') return null;
  const nodes = Object.values(graph);
  const sampler = nodes.find((node) => /^KSampler/.test(node?.class_type ?? ''));
  if (!sampler) return null;
  const input = sampler.inputs ?? {};
  const linked = (link) => (Array.isArray(link) ? graph[link[0]] : null);
  const textOf = (link) => {
    const node = linked(link);
    return typeof node?.inputs?.text === 'string' ? node.inputs.text : typeof node?.inputs?.text_g === 'string' ? node.inputs.text_g : undefined;
  };
  const latent = linked(input.latent_image)?.inputs ?? {};
  return cleaned({
    prompt: textOf(input.positive),
    negative_prompt: textOf(input.negative),
    steps: input.steps,
    cfg_scale: input.cfg,
    seed: input.seed ?? input.noise_seed,
    sampler: ours(input.sampler_name, server.options?.samplers),
    scheduler: ours(input.scheduler, server.options?.schedulers),
    width: latent.width,
    height: latent.height,
  });
}

function cleaned(params) {
  return Object.fromEntries(Object.entries(params).filter(([, value]) => value !== undefined && value !== null && value !== ''));
}

/** The generation parameters a dropped image carries, or null (no PNG text we can read). */
export async function readParameters(file) {
  const texts = await pngText(await file.arrayBuffer());
  if (typeof texts.parameters === 'string') return { source: 'parameters', params: parseParameters(texts.parameters) };
  if (typeof texts.prompt === 'string') {
    const params = parseComfyPrompt(texts.prompt);
    if (params) return { source: 'ComfyUI', params };
  }
  return null;
}

function imageOf(transfer) {
  return Array.from(transfer?.files ?? []).find((file) => IMAGE.test(file.type)) ?? null;
}

/** Where a drop or paste lands: the ControlNet or img2img zone it is over, else nowhere in particular. */
function zoneOf(target) {
  return target instanceof Element ? target.closest('[data-drop]')?.dataset.drop ?? null : null;
}

async function useAs(zone, file) {
  const dataUrl = await readFile(file);
  if (zone === 'control') await useControlImage(dataUrl);
  else await useInputImage(dataUrl);
  location.hash = '#generate';
}

async function openDialog(file) {
  const found = await readParameters(file);
  dropped = { file, params: found?.params ?? null };
  $('png-summary').textContent = found
    ? `${file.name || 'The image'} carries its generation parameters (${found.source}):`
    : `${file.name || 'The image'} carries no generation parameters this page can read.`;
  $('png-params').replaceChildren(...Object.entries(found?.params ?? {}).flatMap(([name, value]) => [
    element('dt', { text: name }), element('dd', { text: String(value) })]));
  $('png-use').disabled = !found;
  $('png-dialog').showModal();
}

export function init() {
  // A file dropped where nothing takes it would replace the page with the file: never.
  window.addEventListener('dragover', (event) => {
    if (!Array.from(event.dataTransfer?.types ?? []).includes('Files')) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    for (const zone of document.querySelectorAll('[data-drop]')) zone.classList.toggle('drop-target', zone.contains(event.target));
  });
  window.addEventListener('dragleave', (event) => {
    if (!event.relatedTarget) for (const zone of document.querySelectorAll('.drop-target')) zone.classList.remove('drop-target');
  });
  window.addEventListener('drop', guarded(async (event) => {
    event.preventDefault();
    for (const zone of document.querySelectorAll('.drop-target')) zone.classList.remove('drop-target');
    const file = imageOf(event.dataTransfer);
    if (!file) {
      if (event.dataTransfer?.files?.length) notify('Only PNG, JPEG or WebP images can be dropped here.', 'notice');
      return;
    }
    const zone = zoneOf(event.target);
    if (zone) await useAs(zone, file);
    else await openDialog(file);
  }));
  document.addEventListener('paste', guarded(async (event) => {
    const file = imageOf(event.clipboardData);
    if (!file) return;  // text pastes as usual
    event.preventDefault();
    const zone = zoneOf(document.activeElement) ?? zoneOf(event.target);
    if (zone) await useAs(zone, file);
    else await openDialog(file);
  }));
  $('png-use').addEventListener('click', guarded(async () => {
    $('png-dialog').close();
    if (dropped?.params) await applyParams(dropped.params, 'txt2img');
  }));
  $('png-input').addEventListener('click', guarded(async () => {
    $('png-dialog').close();
    if (dropped) await useAs('img2img', dropped.file);
  }));
  $('png-control').addEventListener('click', guarded(async () => {
    $('png-dialog').close();
    if (dropped) await useAs('control', dropped.file);
  }));
}
