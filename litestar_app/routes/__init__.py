"""One module per core package it serves (generation, upscale, models, jobs, output, prompt_help; a1111 and openai for
core.compat), plus the browser's own pages (login, ui); each exposes a list of route handlers, ROUTES."""
