"""Webhooks: each finished job (completed, failed, cancelled) POSTed to the job's `callback_url` and to the
configured `[webhooks] urls`, signed in the Standard Webhooks form, retried with back-off and kept in the store
until delivered or given up."""
