// sdcpp-worker: loads a model once (context flags as sd-cli spells them), then runs one generation per line read
// on stdin, with progress and preview callbacks. No HTTP, no port. Answer lines alone go to stdout; everything else
// (the library's and the examples' logs) goes to stderr, in sd-cli's format.
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
//       empty), "preview"?: PreviewRequest | null (default null)}
//   One generation. A line that is not one (not JSON, not an object, a field missing, of the wrong type or unknown)
//   is refused with an `error` answer: nothing is filled in with a default.
//   - args: generation flags as sd-cli spells them
//   - output: "<folder>/image_%d.png" or "<folder>/video.webm"
// PreviewRequest {"mode": "proj" | "tae" | "vae", "path": string (not empty), "noisy"?: true | false (default false)}
//   Write the running job's preview to `path` at each step (written whole, then renamed into place).
//   - noisy: preview the noisy latent instead of the denoised one
// A cancel is one JSON object on one line of stdin too:
// CancelRequest {"cancel": string (not empty)}
//   Stop the job `cancel` names: read at once, also while a job runs. The running job stops at its next sampling
//   step (or, past its last one, once that image is decoded) and answers `cancelled`, listing the images of its
//   batch already saved, which stay; the model stays loaded. A job line still waiting is dropped with the same
//   answer; a cancel naming no running or waiting job is ignored (that job has had its answer). A malformed cancel
//   line is refused with an `error` answer.
//   - cancel: the job_id of the job to stop
// Answers are JSON objects, one per line on stdout, told apart by their type:
// Ready {"type": "ready"}
//   The model is loaded; job lines are read from now on.
// Fatal {"type": "fatal", "error": string}
//   The model could not be loaded; the worker exits (code 1, or 2 for invalid model arguments).
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
};
static JobState current;

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

// The `cancelled` answer of the running job: the images it saved before the cancel, when there are any.
static json cancelled_answer(const std::string& job_id) {
    json answer = {{"type", "cancelled"}, {"job_id", job_id}};
    if (!current.written.empty()) answer["outputs"] = current.written;
    return answer;
}

static void on_log(enum sd_log_level_t level, const char* text, void*) {
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

static void on_progress(int step, int steps, float time, void*) {
    // sd.cpp reports every bar through this one callback: loading the model or a LoRA's tensors, the sampling steps
    // (starting with a step 0), VAE and upscaler tiles. Only finished steps inside the sampler loop (`in_sampling`,
    // told by the library's own log lines: the same phases runners/progress.py reads from sd-cli) are answers.
    if (current.job_id.empty() || !in_sampling) return;
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
    SDMode mode = IMG_GEN;
    std::vector<std::string> args;
    std::string output;
    preview_t preview = PREVIEW_NONE;
    std::string preview_path;
    bool preview_noisy = false;
};

// Returns what is wrong with the line (the field and the rule), or "" when it is a job: nothing is filled in with
// a default the sender did not mean.
static std::string check_job(const json& line, JobLine& job) {
    static const std::set<std::string> fields = {"job_id", "mode", "args", "output", "preview"};
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
    if (!line.contains("preview") || line["preview"].is_null()) return "";
    const json& preview = line["preview"];
    if (!preview.is_object()) return "'preview' must be an object or null";
    static const std::set<std::string> preview_fields = {"mode", "path", "noisy"};
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
    sd_set_preview_callback(on_preview, job.preview, 1, !job.preview_noisy, job.preview_noisy, nullptr);

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

// One job line, checked and run (on the main thread, which owns the model).
static void process_line(sd_ctx_t* sd_ctx, const SDContextParams& ctx, const std::string& line) {
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
    JobLine job;
    std::string wrong = check_job(request, job);
    if (!wrong.empty()) {
        json answer = {{"type", "error"}, {"error", "refused: " + wrong}};
        if (request.contains("job_id") && request["job_id"].is_string()) answer["job_id"] = request["job_id"];
        emit(answer);
        return;
    }
    // A job that throws (a folder that cannot be listed, a library error) fails alone: the model stays loaded.
    try {
        run(sd_ctx, ctx, job);
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

    SDContextParams ctx;
    std::vector<ArgOptions> options = {ctx.get_options()};
    if (!parse_options(argc, argv, options) || !ctx.resolve_and_validate(IMG_GEN)) {
        emit({{"type", "fatal"}, {"error", "invalid model arguments"}});
        return 2;
    }
    sd_set_log_callback(on_log, nullptr);
    sd_set_progress_callback(on_progress, nullptr);
    // Weights stay loaded (free_params_immediately false) and the VAE encoder too (img2img on the same model).
    sd_ctx_params_t params = ctx.to_sd_ctx_params_t(false, false, false);
    SDCtxPtr sd_ctx(new_sd_ctx(&params));
    if (sd_ctx == nullptr) {
        emit({{"type", "fatal"}, {"error", last_error.empty() ? "new_sd_ctx failed" : last_error}});
        return 1;
    }
    emit({{"type", "ready"}});

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
        process_line(sd_ctx.get(), ctx, line);
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
