// sdcpp-worker: loads a model once (context flags as sd-cli spells them), then runs one generation per line read
// on stdin, with progress and preview callbacks. No HTTP, no port. Answer lines alone go to stdout; everything else
// (the library's and the examples' logs) goes to stderr, in sd-cli's format.
//
// Resident models: the worker keeps several models loaded at once, each in its own sd context under the name it was
// loaded with (`--resident-name NAME` before the first model's flags, then `load` lines), so a job naming one of them
// (`model`) runs with no reload. It evicts nothing by itself: its owner keeps the memory budget (least recently used
// out, with `unload` lines; core/workers/). The memory a model takes is estimated by the sizes of its model files
// (every argument of its load that is a regular file: weights, text encoders, VAE/TAE; the LoRA and embedding
// folders are not counted), which is what its weights take on the backend within a few percent; the compute buffers
// sd.cpp prints are per job and not part of the estimate.
//
// Cancel (a `{"cancel": job_id}` line, read by a thread while the job runs): the pinned sd.cpp has no stop call, and
// ggml's CPU abort callback sits on backend objects the library keeps to itself, so the one hook we own is the
// progress callback. It throws `JobCancelled` there, and only while the library is sampling (see `in_sampling`):
// - Inside `sample()` every progress call comes from the denoise step (`report_sample_progress`, and the step-0
//   call before the first step), on this thread, between two graph computes: no ggml graph is running and no
//   worker thread of the library is alive, and everything up to `generate_image`/`generate_video` holds its memory
//   in RAII objects (sd::Tensor, std::vector, std::optional, the VAE-axes guard), so the unwinding frees it all.
//   What stays is the diffusion model's compute buffer (the library frees it at the end of `sample()`): it is
//   reused by the next job and freed when that one ends, so cancels do not add up (the tests check RSS over 20).
// - Outside sampling a throw would be unsafe: the weights loader (a LoRA of the job) reports progress from the
//   thread that owns unjoined std::threads (std::terminate), and preview frames are malloc'ed around the preview
//   callback. So the sampling phase is told by the library's own log lines around its sampler loop (the
//   `SAMPLING_BEGINS` / `SAMPLING_ENDS` tables); outside it a cancel waits for the next sampling step, or for the
//   image's end, and the answer is `cancelled` all the same.
// - A batch runs one image at a time, each saved (a `saved` answer) as soon as it is decoded: a cancel keeps the
//   images already finished and lists them in its `cancelled` answer (issue 22: they were lost).
// - Where ggml's backend has an abort callback (the CPU backend; Metal's cannot be reached: Apple's linker has no
//   `--wrap`) the running step stops too, within one graph node: the build wraps `ggml_backend_graph_compute`
//   (link option `--wrap`, see CMakeLists.txt) to give each backend `abort_compute`, which says "abort" only while
//   sampling a cancelled job. The library then takes its own failure path (every sampler checks for a failed step;
//   `sample()` frees its buffers, `generate_image` returns null), and the answer is `cancelled`. CUDA, Vulkan and
//   ROCm have no abort callback: there the step ends first.
// - A job that never reaches a sampling step again (a long VAE decode) is stopped by ResidentWorker's
//   kill-and-restart fallback after its bound (runners/resident_worker.py).
//
// BEGIN PROTOCOL (made from runners/worker_protocol.py by `python -m runners.worker_protocol`; a unit test checks it)
// A job is one JSON object on one line of stdin (`?` marks a field that may be left out):
// JobRequest {"job_id": string (not empty), "mode": "img_gen" | "vid_gen", "args": [string, ...], "output": string (not
//       empty), "preview"?: PreviewRequest | null (default null), "model"?: string (default "")}
//   One generation. A line that is not one (not JSON, not an object, a field missing, of the wrong type or unknown)
//   is refused with an `error` answer: nothing is filled in with a default.
//   - args: generation flags as sd-cli spells them
//   - output: "<folder>/image_%d.png" or "<folder>/video.webm"
//   - model: the resident model to run on, by the name it was loaded under (empty: the most recently used)
// PreviewRequest {"mode": "proj" | "tae" | "vae", "path": string (not empty), "noisy"?: true | false (default false),
//       "interval"?: integer (default 1)}
//   Write the running job's preview to `path` every `interval` sampling steps and at the last one (written whole,
//   then renamed into place); the steps between are not decoded at all.
//   - noisy: preview the noisy latent instead of the denoised one
//   - interval: sampling steps between two previews
// A cancel, a load and an unload are one JSON object on one line of stdin too:
// CancelRequest {"cancel": string (not empty)}
//   Stop the job `cancel` names: read at once, also while a job runs. The running job stops at its next sampling
//   step (or, past its last one, once that image is decoded) and answers `cancelled`, listing the images of its
//   batch already saved, which stay; the model stays loaded. A job line still waiting is dropped with the same
//   answer; a cancel naming no running or waiting job is ignored (that job has had its answer). A malformed cancel
//   line is refused with an `error` answer.
//   - cancel: the job_id of the job to stop
// LoadRequest {"load": string (not empty), "args": [string, ...]}
//   Load a model beside the resident ones, under the name `load` (in place of a resident model of that name); run in
//   order with the job lines. Answered `models`, or `load_failed` (the other models stay loaded).
//   - load: the name the model is resident under
//   - args: context flags as sd-cli spells them
// UnloadRequest {"unload": string (not empty)}
//   Free the resident model named `unload` (nothing if none is); run in order with the job lines. Answered `models`.
//   - unload: the name the model is resident under
// ResidentModel {"name": string, "mib": integer}
//   A model the worker holds.
//   - mib: its model files' sizes in MiB: the estimate of what it takes
// Answers are JSON objects, one per line on stdout, told apart by their type:
// Ready {"type": "ready"}
//   The model is loaded; job lines are read from now on.
// Fatal {"type": "fatal", "error": string}
//   The model could not be loaded; the worker exits (code 1, or 2 for invalid model arguments).
// Models {"type": "models", "models": [ResidentModel, ...], "loads": integer}
//   The resident models, least recently used first: after `ready` and after each load or unload line.
//   - loads: sd contexts made since the worker started (the first model's included)
// LoadFailed {"type": "load_failed", "model": string, "error": string}
//   A load line's model could not be loaded; the other resident models stay loaded.
// Progress {"type": "progress", "job_id": string, "step": integer, "steps": integer, "time": number}
//   A sampling step of the job finished.
//   - time: seconds the step took
// Preview {"type": "preview", "job_id": string, "step": integer, "frames": integer, "path": string, "is_noisy": true |
//       false}
//   A preview of the job was written to `path`.
// Saved {"type": "saved", "job_id": string, "path": string}
//   An image of the job was written to `path` (each image of a batch as soon as it is decoded, before `done`).
// Done {"type": "done", "job_id": string, "outputs": [string, ...]}
//   The job finished; `outputs` are the files written.
// Failed {"type": "failed", "job_id": string, "error": string}
//   The job failed (bad arguments, an input that cannot be read, an exception); the model stays loaded.
// Cancelled {"type": "cancelled", "job_id": string, "outputs"?: [string, ...] (default [])}
//   The job was stopped by a cancel line; the model stays loaded. The images of a batch finished before the cancel
//   are kept.
//   - outputs: the images saved before the cancel
// LineError {"type": "error", "error": string, "job_id"?: string | null (default null)}
//   A line was refused (see JobRequest); the worker reads the next one.
//   - error: the field and the rule it broke
//   - job_id: when the line had a string job_id
// END PROTOCOL
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iostream>
#include <list>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <json.hpp>

#include "common/common.h"
#include "common/log.h"
#include "common/media_io.h"
#include "common/resource_owners.hpp"
#include "ggml-backend.h"
#include "stable-diffusion.h"

namespace fs = std::filesystem;
using json   = nlohmann::json;

static FILE* protocol = nullptr;  // the real stdout: answer lines only
static std::mutex protocol_mutex;
static std::string last_error;

struct JobState {
    std::string job_id;
    json written = json::array();  // the images of the job saved so far (a cancel keeps them)
    std::string preview_path;
    int preview_fps = 16;
    preview_t preview_mode = PREVIEW_NONE;
    bool preview_noisy     = false;
    int preview_interval   = 1;  // decode a preview every N sampling steps (and at the last one)
};
static JobState current;

// The resident models, least recently used first (a job moves its model to the back); `loads` counts every sd context
// made since the start, so a caller can tell that a switch between resident models loaded nothing.
struct ResidentModel {
    std::string name;
    SDContextParams ctx;
    SDCtxPtr sd_ctx;
    int64_t mib = 0;
};
static std::list<std::unique_ptr<ResidentModel>> resident;
static int loads = 0;

// Cancelling: what the stdin reader thread and the job (main) thread share. The reader queues job lines (with their
// job_id, when they have a string one) and handles cancel lines at once; `cancel_requested` is read by the callback.
struct QueuedLine {
    std::string text;
    std::string job_id;
};
static std::mutex lines_mutex;
static std::condition_variable lines_ready;
static std::deque<QueuedLine> lines;  // job lines not yet started
static bool input_ended = false;
static std::string running_job_id;  // the job being run, "" between jobs (guarded by lines_mutex)
static std::atomic<bool> cancel_requested{false};
static std::atomic<bool> in_sampling{false};  // inside the library's sampler loop: a throw is safe (see the top)

struct JobCancelled {};  // not a std::exception: no `catch (const std::exception&)` of the library stops it

// The library's log lines that open and close its sampler loops (stable-diffusion.cpp of the pinned sdist), as
// `file:line - message`: "generating image: b/n - seed" comes right before each image's sample() (after LoRAs are
// applied and the conditions computed), "generating N latent images completed" after the last one; a video logs
// "generate_video WxHxT" before its one or two sample() calls and "generating latent video completed" after.
// Only stable-diffusion.cpp's own lines count, by how their message starts (a prompt in a log line cannot match).
// A failed generation returns without the closing line: the main loop ends the phase at the job's end too.
struct LogMark {
    const char* starts;    // the message starts with this
    const char* contains;  // and contains this ("" for anything)
};
static const LogMark SAMPLING_BEGINS[] = {{"generating image: ", ""}, {"generate_video ", ""}};
static const LogMark SAMPLING_ENDS[]   = {{"generating ", " latent images completed"},
                                          {"generating latent video completed", ""}};

static bool library_line_is(const char* text, const LogMark& mark) {
    static const char library_file[] = "stable-diffusion.cpp:";
    if (strncmp(text, library_file, sizeof(library_file) - 1) != 0) return false;
    const char* message = strstr(text, " - ");
    if (message == nullptr) return false;
    message += 3;
    return strncmp(message, mark.starts, strlen(mark.starts)) == 0 && strstr(message, mark.contains) != nullptr;
}

static void emit(const json& message) {
    std::lock_guard<std::mutex> lock(protocol_mutex);
    std::string line = message.dump(-1, ' ', false, json::error_handler_t::replace);
    fputs(line.c_str(), protocol);
    fputc('\n', protocol);
    fflush(protocol);
}

// Device facts the library logs at DEBUG only while a model loads: ggml-vulkan's device list and the backend sd.cpp
// initialises ("Vulkan0", or "CPU" where it fell back). They are printed at INFO, so the service reads them for
// /health (runners/device_facts.py) without the whole DEBUG log. The message starts with one of these.
static const char* const DEVICE_FACT_LINES[] = {"ggml_vulkan: ", "Initializing backend: "};

static bool is_device_fact(const char* text) {
    const char* message = strstr(text, " - ");  // after the `file:line - ` prefix
    if (message == nullptr) return false;
    message += 3;
    for (const char* starts : DEVICE_FACT_LINES) {
        if (strncmp(message, starts, strlen(starts)) == 0) return true;
    }
    return false;
}

// The `cancelled` answer of the running job: the images it saved before the cancel, when there are any.
static json cancelled_answer(const std::string& job_id) {
    json answer = {{"type", "cancelled"}, {"job_id", job_id}};
    if (!current.written.empty()) answer["outputs"] = current.written;
    return answer;
}

static void on_log(enum sd_log_level_t level, const char* text, void*) {
    if (level == SD_LOG_DEBUG && current.job_id.empty() && is_device_fact(text)) level = SD_LOG_INFO;
    if (!current.job_id.empty()) {
        for (const LogMark& mark : SAMPLING_BEGINS) {
            if (library_line_is(text, mark)) in_sampling = true;
        }
        for (const LogMark& mark : SAMPLING_ENDS) {
            if (library_line_is(text, mark)) in_sampling = false;
        }
    }
    if (level == SD_LOG_ERROR) {
        last_error = text;
        while (!last_error.empty() && (last_error.back() == '\n' || last_error.back() == '\r')) {
            last_error.pop_back();
        }
    }
    log_print(level, text, log_verbose, false);
}

static void on_preview(int step, int frame_count, sd_image_t* frames, bool is_noisy, void*);

// The pinned library ignores its preview interval (../shared/notes/sdcpp-interface.md §0.1) and decodes a preview at
// every step, which costs a VAE/TAESD decode each time. It reads its "preview denoised / noisy" switches afresh at
// every step, and the sampler reports step k (our on_progress) right after step k's preview and before step k + 1's,
// so switching them here decodes only the steps that are due: every `preview_interval`-th and the last.
static void arm_preview_for(int next_step, int steps) {
    if (current.preview_mode == PREVIEW_NONE) return;
    bool due = current.preview_interval <= 1 || next_step % current.preview_interval == 0 || next_step == steps;
    sd_set_preview_callback(on_preview, current.preview_mode, 1, due && !current.preview_noisy,
                            due && current.preview_noisy, nullptr);
}

static void on_progress(int step, int steps, float time, void*) {
    // sd.cpp reports every bar through this one callback: loading the model or a LoRA's tensors, the sampling steps
    // (starting with a step 0), VAE and upscaler tiles. Only finished steps inside the sampler loop (`in_sampling`,
    // told by the library's own log lines: the same phases runners/progress.py reads from sd-cli) are answers.
    if (current.job_id.empty() || !in_sampling) return;
    arm_preview_for(step + 1, steps);
    if (step > 0) {
        emit({{"type", "progress"}, {"job_id", current.job_id}, {"step", step}, {"steps", steps}, {"time", time}});
    }
    if (cancel_requested) {
        in_sampling = false;
        throw JobCancelled{};  // unwinds out of generate_image/generate_video to `run` (see the top of the file)
    }
}

#ifdef SDCPP_WORKER_WRAP_GRAPH_COMPUTE
// Every graph the library computes passes here first (the link option `--wrap=ggml_backend_graph_compute`): the
// backend gets our abort callback when its kind has one (ggml's registry offers "ggml_backend_set_abort_callback"
// for CPU and Metal), so a cancel stops a sampling step between two graph nodes instead of at its end.
// SDCPP_WORKER_STEP_CANCEL_ONLY=1 leaves the backends alone: a cancel then waits for the step's end, as on backends
// without an abort callback (the tests run both ways).
static const bool abort_steps = getenv("SDCPP_WORKER_STEP_CANCEL_ONLY") == nullptr;
static bool abort_compute(void*) { return in_sampling && cancel_requested; }

extern "C" enum ggml_status __real_ggml_backend_graph_compute(ggml_backend_t backend, struct ggml_cgraph* graph);

extern "C" enum ggml_status __wrap_ggml_backend_graph_compute(ggml_backend_t backend, struct ggml_cgraph* graph) {
    ggml_backend_dev_t device = ggml_backend_get_device(backend);
    ggml_backend_reg_t reg    = device != nullptr ? ggml_backend_dev_backend_reg(device) : nullptr;
    auto set_abort            = reg == nullptr ? nullptr
                                               : reinterpret_cast<ggml_backend_set_abort_callback_t>(
                                          ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_abort_callback"));
    if (set_abort != nullptr && abort_steps) set_abort(backend, abort_compute, nullptr);
    return __real_ggml_backend_graph_compute(backend, graph);
}
#endif

static void on_preview(int step, int frame_count, sd_image_t* frames, bool is_noisy, void*) {
    if (current.preview_path.empty() || frames == nullptr) {
        return;
    }
    fs::path target  = current.preview_path;
    fs::path partial = target;
    partial.replace_filename("." + target.filename().string() + ".part" + target.extension().string());
    bool ok = frame_count == 1
                  ? write_image_to_file(partial.string(), frames->data, frames->width, frames->height, frames->channel)
                  : create_video_from_sd_images(partial.string().c_str(), frames, frame_count, current.preview_fps) == 0;
    std::error_code ec;
    if (ok) {
        fs::rename(partial, target, ec);
    }
    if (ok && !ec) {
        emit({{"type", "preview"}, {"job_id", current.job_id}, {"step", step}, {"frames", frame_count},
              {"path", target.string()}, {"is_noisy", is_noisy}});
    }
}

static bool load_dir_images(const std::string& dir, std::vector<SDImageOwner>& images, int width, int height,
                            int max_images) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.is_regular_file()) {
            files.push_back(entry.path());
        }
    }
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
        int w = 0, h = 0;
        uint8_t* buffer = load_image_from_file(path.string().c_str(), w, h, width, height);
        if (buffer == nullptr) {
            last_error = "load image from '" + path.string() + "' failed";
            return false;
        }
        images.emplace_back(sd_image_t{(uint32_t)w, (uint32_t)h, 3, buffer});
        if (max_images > 0 && (int)images.size() >= max_images) {
            break;
        }
    }
    return true;
}

// The input images, as sd-cli's main.cpp loads them.
static bool load_inputs(SDGenerationParams& gen) {
    auto load_and_size = [&](const std::string& path, SDImageOwner& image, bool resize) {
        int w = resize && gen.width_and_height_are_set() ? gen.width : 0;
        int h = resize && gen.width_and_height_are_set() ? gen.height : 0;
        if (!load_sd_image_from_file(image.put(), path.c_str(), w, h, 3)) {
            last_error = "load image from '" + path + "' failed";
            return false;
        }
        gen.set_width_and_height_if_unset(image.get().width, image.get().height);
        return true;
    };
    if (!gen.init_image_path.empty() && !load_and_size(gen.init_image_path, gen.init_image, true)) return false;
    if (!gen.end_image_path.empty() && !load_and_size(gen.end_image_path, gen.end_image, true)) return false;
    if (!gen.ref_image_paths.empty()) {
        gen.ref_images.clear();
        for (auto& path : gen.ref_image_paths) {
            SDImageOwner ref({0, 0, 3, nullptr});
            if (!load_and_size(path, ref, false)) return false;
            gen.ref_images.push_back(std::move(ref));
        }
    }
    int width = gen.get_resolved_width(), height = gen.get_resolved_height();
    if (!gen.mask_image_path.empty()) {
        if (!load_sd_image_from_file(gen.mask_image.put(), gen.mask_image_path.c_str(), width, height, 1)) {
            last_error = "load image from '" + gen.mask_image_path + "' failed";
            return false;
        }
    } else {
        sd_image_t mask = {(uint32_t)width, (uint32_t)height, 1, (uint8_t*)malloc((size_t)width * height)};
        if (mask.data == nullptr) return false;
        memset(mask.data, 255, (size_t)width * height);
        gen.mask_image.reset(mask);
    }
    if (!gen.control_image_path.empty() &&
        !load_sd_image_from_file(gen.control_image.put(), gen.control_image_path.c_str(), width, height)) {
        last_error = "load image from '" + gen.control_image_path + "' failed";
        return false;
    }
    if (!gen.control_video_path.empty()) {
        gen.control_frames.clear();
        if (!load_dir_images(gen.control_video_path, gen.control_frames, width, height, gen.video_frames)) return false;
    }
    if (!gen.pm_id_images_dir.empty()) {
        gen.pm_id_images.clear();
        if (!load_dir_images(gen.pm_id_images_dir, gen.pm_id_images, 0, 0, 0)) return false;
    }
    return true;
}

static std::string frame_name(const std::string& pattern, int index) {
    static const std::regex specifier("%\\d{0,3}d");
    std::smatch match;
    if (!std::regex_search(pattern, match, specifier)) return pattern;
    char buffer[32];
    snprintf(buffer, sizeof(buffer), match.str(0).c_str(), index);
    return pattern.substr(0, match.position(0)) + buffer + pattern.substr(match.position(0) + match.length(0));
}

// Outputs as sd-cli writes them: numbered images with its `parameters` metadata, or one video container.
static bool save(const SDContextParams& ctx, const SDGenerationParams& gen, SDMode mode, sd_image_t* results,
                 int count, const std::string& output, json& written) {
    if (mode == VID_GEN && count > 1) {
        if (create_video_from_sd_images(output.c_str(), results, count, gen.fps) != 0) {
            last_error = "failed to save result video to '" + output + "'";
            return false;
        }
        written.push_back(output);
        return true;
    }
    for (int i = 0; i < count; ++i) {
        if (!results[i].data) continue;
        std::string path    = frame_name(output, i);
        const int64_t seed  = mode == VID_GEN ? gen.seed : gen.seed + i;
        std::string params  = gen.embed_image_metadata ? get_image_params(ctx, gen, seed, mode) : "";
        if (write_image_to_file(path, results[i].data, results[i].width, results[i].height, results[i].channel,
                                params, 90)) {
            written.push_back(path);
        }
    }
    if (written.empty()) last_error = "no result image could be saved";
    return !written.empty();
}

// A job line, checked: every field present with its type, nothing else (see the protocol above).
struct JobLine {
    std::string job_id;
    std::string model;  // "" : the most recently used resident model
    SDMode mode = IMG_GEN;
    std::vector<std::string> args;
    std::string output;
    preview_t preview = PREVIEW_NONE;
    std::string preview_path;
    bool preview_noisy   = false;
    int preview_interval = 1;
};

// Returns what is wrong with the line (the field and the rule), or "" when it is a job: nothing is filled in with
// a default the sender did not mean.
static std::string check_job(const json& line, JobLine& job) {
    static const std::set<std::string> fields = {"job_id", "model", "mode", "args", "output", "preview"};
    for (auto it = line.begin(); it != line.end(); ++it) {
        if (fields.count(it.key()) == 0) return "unknown field '" + it.key() + "'";
    }
    auto text = [](const json& object, const std::string& name, std::string& into) -> std::string {
        if (!object.contains(name)) return "'" + name + "' is missing";
        if (!object[name].is_string()) return "'" + name + "' must be a string";
        into = object[name].get<std::string>();
        if (into.empty()) return "'" + name + "' must not be empty";
        return "";
    };
    std::string why, mode, preview_mode;
    if (!(why = text(line, "job_id", job.job_id)).empty()) return why;
    if (!(why = text(line, "mode", mode)).empty()) return why;
    if (mode != "img_gen" && mode != "vid_gen") return "'mode' must be \"img_gen\" or \"vid_gen\", not \"" + mode + "\"";
    job.mode = mode == "vid_gen" ? VID_GEN : IMG_GEN;
    if (!line.contains("args")) return "'args' is missing";
    if (!line["args"].is_array()) return "'args' must be a list of strings";
    for (size_t i = 0; i < line["args"].size(); ++i) {
        if (!line["args"][i].is_string()) return "'args' must be a list of strings (item " + std::to_string(i) + " is not)";
        job.args.push_back(line["args"][i].get<std::string>());
    }
    if (!(why = text(line, "output", job.output)).empty()) return why;
    if (line.contains("model")) {
        if (!line["model"].is_string()) return "'model' must be a string";
        job.model = line["model"].get<std::string>();
    }
    if (!line.contains("preview") || line["preview"].is_null()) return "";
    const json& preview = line["preview"];
    if (!preview.is_object()) return "'preview' must be an object or null";
    static const std::set<std::string> preview_fields = {"mode", "path", "noisy", "interval"};
    for (auto it = preview.begin(); it != preview.end(); ++it) {
        if (preview_fields.count(it.key()) == 0) return "unknown field 'preview." + it.key() + "'";
    }
    if (!preview.contains("mode") || !preview["mode"].is_string()) return "'preview.mode' must be a string";
    preview_mode = preview["mode"].get<std::string>();
    job.preview  = preview_mode == "proj" ? PREVIEW_PROJ : preview_mode == "tae" ? PREVIEW_TAE
                 : preview_mode == "vae"  ? PREVIEW_VAE  : PREVIEW_COUNT;
    if (job.preview == PREVIEW_COUNT) {
        return "'preview.mode' must be \"proj\", \"tae\" or \"vae\", not \"" + preview_mode + "\"";
    }
    if (!(why = text(preview, "path", job.preview_path)).empty()) return "'preview." + why.substr(1);
    if (preview.contains("noisy")) {
        if (!preview["noisy"].is_boolean()) return "'preview.noisy' must be true or false";
        job.preview_noisy = preview["noisy"].get<bool>();
    }
    if (preview.contains("interval")) {
        const json& interval = preview["interval"];
        if (!interval.is_number_integer() || interval.get<long long>() < 1 || interval.get<long long>() > 10000) {
            return "'preview.interval' must be an integer from 1 to 10000";
        }
        job.preview_interval = interval.get<int>();
    }
    return "";
}

// A cancel line, checked like a job line: returns what is wrong with it, or "" (then `job_id` is the job it names).
static std::string check_cancel(const json& line, std::string& job_id) {
    static const std::set<std::string> cancel_fields = {"cancel"};
    for (auto it = line.begin(); it != line.end(); ++it) {
        if (cancel_fields.count(it.key()) == 0) return "unknown field '" + it.key() + "' in a cancel line";
    }
    if (!line["cancel"].is_string()) return "'cancel' must be a string";
    job_id = line["cancel"].get<std::string>();
    if (job_id.empty()) return "'cancel' must not be empty";
    return "";
}

// The stdin reader (its own thread, so that a cancel reaches a running job): cancel lines take effect at once, job
// lines queue for the main thread, which checks and runs them in order.
static void read_lines() {
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        json request = json::parse(line, nullptr, false);  // a line that is not JSON is refused by the main thread
        if (request.is_object() && request.contains("cancel")) {
            std::string job_id, wrong = check_cancel(request, job_id);
            if (!wrong.empty()) {
                emit({{"type", "error"}, {"error", "refused: " + wrong}});
                continue;
            }
            std::lock_guard<std::mutex> lock(lines_mutex);
            if (!running_job_id.empty() && running_job_id == job_id) {
                cancel_requested = true;  // the job stops at its next sampling step (see the top of the file)
                continue;
            }
            auto queued = std::find_if(lines.begin(), lines.end(), [&](const QueuedLine& q) { return q.job_id == job_id; });
            if (queued != lines.end()) {
                lines.erase(queued);
                emit({{"type", "cancelled"}, {"job_id", job_id}});
            } else {
                LOG_INFO("cancel of job '%s' ignored: it is not running or waiting", job_id.c_str());
            }
            continue;
        }
        QueuedLine queued{line, ""};
        if (request.is_object() && request.contains("job_id") && request["job_id"].is_string()) {
            queued.job_id = request["job_id"].get<std::string>();
        }
        std::lock_guard<std::mutex> lock(lines_mutex);
        lines.push_back(std::move(queued));
        lines_ready.notify_one();
    }
    std::lock_guard<std::mutex> lock(lines_mutex);
    input_ended = true;
    lines_ready.notify_one();
}

static void run(sd_ctx_t* sd_ctx, const SDContextParams& ctx, const JobLine& job) {
    current        = JobState{};
    current.job_id = job.job_id;
    last_error.clear();
    SDMode mode = job.mode;

    std::vector<const char*> argv = {"sdcpp-worker"};
    for (const auto& arg : job.args) argv.push_back(arg.c_str());
    SDGenerationParams gen;
    std::vector<ArgOptions> options = {gen.get_options()};
    if (!parse_options((int)argv.size(), argv.data(), options) ||
        !gen.resolve_and_validate(mode, ctx.lora_model_dir, ctx.hires_upscalers_dir)) {
        emit({{"type", "failed"}, {"job_id", current.job_id},
              {"error", last_error.empty() ? "invalid generation arguments" : last_error}});
        return;
    }

    current.preview_path = job.preview_path;
    current.preview_fps  = std::max(1, gen.fps / (job.preview == PREVIEW_PROJ ? 4 : 1));
    current.preview_mode     = job.preview;
    current.preview_noisy    = job.preview_noisy;
    current.preview_interval = job.preview_interval;
    sd_set_preview_callback(on_preview, job.preview, 1, !job.preview_noisy, job.preview_noisy, nullptr);
    arm_preview_for(1, 0);  // the sampler's step-0 report re-arms with the real step count

    if (!load_inputs(gen)) {
        emit({{"type", "failed"}, {"job_id", current.job_id}, {"error", last_error}});
        return;
    }
    if (gen.sample_params.sample_method == SAMPLE_METHOD_COUNT)
        gen.sample_params.sample_method = sd_get_default_sample_method(sd_ctx);
    if (gen.high_noise_sample_params.sample_method == SAMPLE_METHOD_COUNT)
        gen.high_noise_sample_params.sample_method = sd_get_default_sample_method(sd_ctx);
    if (gen.sample_params.scheduler == SCHEDULER_COUNT)
        gen.sample_params.scheduler = sd_get_default_scheduler(sd_ctx, gen.sample_params.sample_method);
    if (cancel_requested) {
        emit({{"type", "cancelled"}, {"job_id", current.job_id}});
        return;
    }

    SDImageVec results;
    int count = 0;
    if (mode == IMG_GEN) {
        // One image at a time (the seeds the library would give a batch: seed + b), each saved as soon as it is
        // decoded and said with a `saved` answer: a cancel mid-batch keeps the images already finished (the
        // library would sample every latent before decoding any, so a cancel lost them all).
        for (int b = 0; b < gen.batch_count; ++b) {
            sd_img_gen_params_t params = gen.to_sd_img_gen_params_t();
            params.batch_count         = 1;
            params.seed                = gen.seed + b;
            SDImageVec image;
            image.adopt(generate_image(sd_ctx, &params), 1);
            if (!image || !image.data()[0].data) {
                if (cancel_requested) break;  // the aborted step failed the sampling: a cancel, not a failure
                emit({{"type", "failed"}, {"job_id", current.job_id},
                      {"error", last_error.empty() ? "generate failed" : last_error}});
                return;
            }
            std::string path   = frame_name(job.output, b);
            std::string params_text = gen.embed_image_metadata ? get_image_params(ctx, gen, gen.seed + b, mode) : "";
            const sd_image_t& out   = image.data()[0];
            if (!write_image_to_file(path, out.data, out.width, out.height, out.channel, params_text, 90)) {
                emit({{"type", "failed"}, {"job_id", current.job_id},
                      {"error", "failed to save result image to '" + path + "'"}});
                return;
            }
            current.written.push_back(path);
            emit({{"type", "saved"}, {"job_id", current.job_id}, {"path", path}});
            if (cancel_requested) break;  // asked during this image's decode: the finished images are kept
        }
        if (cancel_requested) {
            emit(cancelled_answer(current.job_id));
            return;
        }
        emit({{"type", "done"}, {"job_id", current.job_id}, {"outputs", current.written}});
        return;
    } else {
        sd_vid_gen_params_t params = gen.to_sd_vid_gen_params_t();
        sd_image_t* frames         = generate_video(sd_ctx, &params, &count);
        results.adopt(frames, count);
    }
    if (cancel_requested) {  // asked during the VAE decode (no sampling step came after): nothing is saved
        emit({{"type", "cancelled"}, {"job_id", current.job_id}});
        return;
    }
    json written = json::array();
    if (!results || !save(ctx, gen, mode, results.data(), count, job.output, written)) {
        emit({{"type", "failed"}, {"job_id", current.job_id},
              {"error", last_error.empty() ? "generate failed" : last_error}});
        return;
    }
    emit({{"type", "done"}, {"job_id", current.job_id}, {"outputs", written}});
}

static void emit_models() {
    json models = json::array();
    for (const auto& model : resident) models.push_back({{"name", model->name}, {"mib", model->mib}});
    emit({{"type", "models"}, {"models", models}, {"loads", loads}});
}

static std::list<std::unique_ptr<ResidentModel>>::iterator find_resident(const std::string& name) {
    return std::find_if(resident.begin(), resident.end(), [&](const auto& model) { return model->name == name; });
}

// Loads a model (its context flags as sd-cli spells them) under `name`, in place of a resident model of that name;
// returns "" or why it could not.
static std::string load_model(const std::string& name, const std::vector<std::string>& args) {
    std::vector<const char*> argv = {"sdcpp-worker"};
    for (const auto& arg : args) argv.push_back(arg.c_str());
    auto model = std::make_unique<ResidentModel>();
    model->name = name;
    std::vector<ArgOptions> options = {model->ctx.get_options()};
    if (!parse_options((int)argv.size(), argv.data(), options) || !model->ctx.resolve_and_validate(IMG_GEN)) {
        return "invalid model arguments";
    }
    for (const auto& arg : args) {  // the estimate: the model files' sizes (see the top of the file)
        std::error_code ec;
        if (fs::is_regular_file(arg, ec)) model->mib += (int64_t)((fs::file_size(arg, ec) + (1 << 20) - 1) >> 20);
    }
    auto same = find_resident(name);
    if (same != resident.end()) resident.erase(same);  // its memory is free before the new context is made
    last_error.clear();
    // Weights stay loaded (free_params_immediately false) and the VAE encoder too (img2img on the same model).
    sd_ctx_params_t params = model->ctx.to_sd_ctx_params_t(false, false, false);
    model->sd_ctx.reset(new_sd_ctx(&params));
    ++loads;
    if (model->sd_ctx == nullptr) return last_error.empty() ? "new_sd_ctx failed" : last_error;
    resident.push_back(std::move(model));
    return "";
}

// A load or unload line, checked like a job line: returns what is wrong with it, or "".
static std::string check_model_line(const json& line, const std::string& verb, std::string& name,
                                    std::vector<std::string>& args) {
    static const std::set<std::string> load_fields   = {"load", "args"};
    static const std::set<std::string> unload_fields = {"unload"};
    const auto& allowed = verb == "load" ? load_fields : unload_fields;
    for (auto it = line.begin(); it != line.end(); ++it) {
        if (allowed.count(it.key()) == 0) return "unknown field '" + it.key() + "' in a" + (verb == "load" ? " load" : "n unload") + " line";
    }
    if (!line[verb].is_string()) return "'" + verb + "' must be a string";
    name = line[verb].get<std::string>();
    if (name.empty()) return "'" + verb + "' must not be empty";
    if (verb == "unload") return "";
    if (!line.contains("args")) return "'args' is missing";
    if (!line["args"].is_array()) return "'args' must be a list of strings";
    for (size_t i = 0; i < line["args"].size(); ++i) {
        if (!line["args"][i].is_string()) return "'args' must be a list of strings (item " + std::to_string(i) + " is not)";
        args.push_back(line["args"][i].get<std::string>());
    }
    return "";
}

static void process_model_line(const json& request, const std::string& verb) {
    std::string name;
    std::vector<std::string> args;
    std::string wrong = check_model_line(request, verb, name, args);
    if (!wrong.empty()) {
        emit({{"type", "error"}, {"error", "refused: " + wrong}});
        return;
    }
    if (verb == "unload") {
        auto found = find_resident(name);
        if (found != resident.end()) resident.erase(found);  // frees its sd context
        emit_models();
        return;
    }
    std::string failed;
    try {
        failed = load_model(name, args);
    } catch (const std::exception& error) {
        failed = std::string("the load failed: ") + error.what();
    }
    if (!failed.empty()) {
        emit({{"type", "load_failed"}, {"model", name}, {"error", failed}});
        return;
    }
    emit_models();
}

// One request line, checked and run (on the main thread, which owns the models): a load, an unload or a job.
static void process_line(const std::string& line) {
    json request;
    try {
        request = json::parse(line);
    } catch (const std::exception& error) {
        emit({{"type", "error"}, {"error", std::string("not a JSON request line: ") + error.what()}});
        return;
    }
    if (!request.is_object()) {
        emit({{"type", "error"}, {"error", "a request line must be a JSON object"}});
        return;
    }
    if (request.contains("load") || request.contains("unload")) {
        process_model_line(request, request.contains("load") ? "load" : "unload");
        return;
    }
    JobLine job;
    std::string wrong = check_job(request, job);
    if (!wrong.empty()) {
        json answer = {{"type", "error"}, {"error", "refused: " + wrong}};
        if (request.contains("job_id") && request["job_id"].is_string()) answer["job_id"] = request["job_id"];
        emit(answer);
        return;
    }
    auto model = job.model.empty() && !resident.empty() ? std::prev(resident.end()) : find_resident(job.model);
    if (model == resident.end()) {
        emit({{"type", "failed"}, {"job_id", job.job_id},
              {"error", "model '" + job.model + "' is not resident on this worker"}});
        return;
    }
    resident.splice(resident.end(), resident, model);  // now the most recently used
    // A job that throws (a folder that cannot be listed, a library error) fails alone: the model stays loaded.
    try {
        run((*model)->sd_ctx.get(), (*model)->ctx, job);
    } catch (const JobCancelled&) {
        emit(cancelled_answer(job.job_id));
    } catch (const std::exception& error) {
        emit({{"type", "failed"}, {"job_id", job.job_id}, {"error", std::string("the job failed: ") + error.what()}});
    } catch (...) {
        emit({{"type", "failed"}, {"job_id", job.job_id}, {"error", "the job failed with an unknown exception"}});
    }
}

int main(int argc, const char* argv[]) {
    // Answer lines own stdout; whatever else prints (the examples log INFO to stdout) goes to stderr.
    protocol = fdopen(dup(STDOUT_FILENO), "w");
    dup2(STDERR_FILENO, STDOUT_FILENO);
    setvbuf(stdout, nullptr, _IOLBF, 0);

    // `--resident-name NAME` first: the name the first model is resident under (default "default").
    std::string first_name = "default";
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() >= 2 && args[0] == "--resident-name") {
        first_name = args[1];
        args.erase(args.begin(), args.begin() + 2);
    }
    sd_set_log_callback(on_log, nullptr);
    sd_set_progress_callback(on_progress, nullptr);
    std::string failed = load_model(first_name, args);
    if (failed == "invalid model arguments") {
        emit({{"type", "fatal"}, {"error", failed}});
        return 2;
    }
    if (!failed.empty()) {
        emit({{"type", "fatal"}, {"error", failed}});
        return 1;
    }
    emit({{"type", "ready"}});
    emit_models();

    std::thread reader(read_lines);
    while (true) {
        std::string line;
        {
            std::unique_lock<std::mutex> lock(lines_mutex);
            lines_ready.wait(lock, [] { return !lines.empty() || input_ended; });
            if (lines.empty()) break;
            line           = std::move(lines.front().text);
            running_job_id = lines.front().job_id;
            cancel_requested = false;
            lines.pop_front();
        }
        process_line(line);
        {
            std::lock_guard<std::mutex> lock(lines_mutex);
            running_job_id.clear();
        }
        in_sampling = false;
        current     = JobState{};  // between jobs, callbacks answer nothing
    }
    reader.join();
    return 0;
}
