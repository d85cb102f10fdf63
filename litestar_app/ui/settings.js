// The Settings view: live preview settings, and the Ollama prompt-enhancement and assistant settings.

import { api, guarded, notify } from './api.js';

const $ = (id) => document.getElementById(id);
const PREVIEW_FIELDS = ['enabled', 'mode', 'interval', 'max_size', 'quality'];

async function showPreview() {
  const settings = await api('/preview/settings');
  $('preview-enabled').checked = settings.enabled;
  for (const field of PREVIEW_FIELDS.slice(1)) $(`preview-${field}`).value = settings[field];
}

async function showLlm(form) {
  const base = form.dataset.endpoint;
  const [settings, status] = await Promise.all([api(`${base}/settings`), api(`${base}/status`)]);
  for (const input of form.elements) {
    if (!input.name) continue;
    if (input.type === 'checkbox') input.checked = Boolean(settings[input.name]);
    else if (input.name === 'api_key') { input.value = ''; input.placeholder = settings.api_key ? 'a key is set' : 'none'; }
    else input.value = settings[input.name] ?? '';
  }
  form.querySelector('[data-status]').textContent = status.enabled
    ? (status.connected ? `Connected to ${status.base_url} (${status.model}).` : `Enabled, but ${status.base_url} does not answer.`)
    : 'Disabled.';
}

export function init() {
  $('preview-form').addEventListener('submit', guarded(async (event) => {
    event.preventDefault();
    const body = { enabled: $('preview-enabled').checked, mode: $('preview-mode').value };
    for (const field of ['interval', 'max_size', 'quality']) body[field] = Number($(`preview-${field}`).value);
    await api('/preview/settings', { method: 'PUT', body });
    notify('Preview settings saved.', 'notice');
  }));
  for (const form of [$('ollama-form'), $('assistant-form')]) {
    form.addEventListener('submit', guarded(async (event) => {
      event.preventDefault();
      const body = {};
      for (const input of form.elements) {
        if (!input.name) continue;
        if (input.type === 'checkbox') body[input.name] = input.checked;
        else if (input.type === 'number') body[input.name] = Number(input.value);
        else if (input.value || input.name !== 'api_key') body[input.name] = input.value;
      }
      await api(`${form.dataset.endpoint}/settings`, { method: 'PUT', body });
      notify('Settings saved.', 'notice');
      await showLlm(form);
    }));
  }
}

export async function show() {
  await Promise.all([showPreview(), showLlm($('ollama-form')), showLlm($('assistant-form'))]);
}
