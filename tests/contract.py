"""What the tests need of the API contract (API.md beside the project), written here so that a fresh
clone's tests read nothing outside the repository. Update it with the contract: every endpoint it
documents under a heading."""

# (method, path) of every endpoint the contract documents, path parameters as in the contract.
DOCUMENTED_ENDPOINTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/architectures"),
        ("POST", "/assistant/chat"),
        ("DELETE", "/assistant/history"),
        ("GET", "/assistant/history"),
        ("GET", "/assistant/settings"),
        ("PUT", "/assistant/settings"),
        ("GET", "/assistant/status"),
        ("POST", "/convert"),
        ("GET", "/health"),
        ("POST", "/img2img"),
        ("GET", "/models"),
        ("GET", "/models/civitai/{id}"),
        ("POST", "/models/download"),
        ("GET", "/models/hash/{model_type}/{model_name}"),
        ("GET", "/models/huggingface"),
        ("POST", "/models/load"),
        ("GET", "/models/paths"),
        ("POST", "/models/unload"),
        ("POST", "/ollama/enhance"),
        ("DELETE", "/ollama/history"),
        ("GET", "/ollama/history"),
        ("DELETE", "/ollama/history/{id}"),
        ("GET", "/ollama/history/{id}"),
        ("GET", "/ollama/models"),
        ("GET", "/ollama/settings"),
        ("PUT", "/ollama/settings"),
        ("GET", "/ollama/status"),
        ("GET", "/options"),
        ("GET", "/output"),
        ("GET", "/output/{path}"),
        ("GET", "/preview/settings"),
        ("PUT", "/preview/settings"),
        ("GET", "/queue"),
        ("DELETE", "/queue/{job_id}"),
        ("GET", "/queue/{job_id}"),
        ("GET", "/thumb/{path}"),
        ("POST", "/txt2img"),
        ("POST", "/txt2vid"),
        ("POST", "/upscale"),
        ("POST", "/upscaler/load"),
        ("POST", "/upscaler/unload"),
    }
)

# (method, path) of the endpoints this server adds for its operators, which the contract does not document: served,
# and in the OpenAPI document, beside the contract's.
OWN_ENDPOINTS: frozenset[tuple[str, str]] = frozenset({("GET", "/metrics"), ("GET", "/workers"), ("GET", "/events")})
