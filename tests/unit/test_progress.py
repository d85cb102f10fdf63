from __future__ import annotations

from runners.progress import Bar, LogLine, ProgressTracker, SamplingStep, StreamSplitter, classify

CAPTURED = (
    b"[INFO ] stable-diffusion.cpp:212  - loading model from 'x'\n"
    b"\r  |======>                                           | 25/196 - 1.87GB/s\x1b[K"
    b"\r  |==================================================| 196/196 - 35.86MB/s\x1b[K\n"
    b"[INFO ] stable-diffusion.cpp:3401 - generating image: 1/2 - seed 42\n"
    b"\r  |================>                                 | 1/3 - 3.42it/s\x1b[K"
    b"\r  |=================================>                | 2/3 - 3.53it/s\x1b[K"
    b"\r  |==================================================| 3/3 - 1.58s/it\x1b[K\n"
    b"[INFO ] stable-diffusion.cpp:3432 - sampling completed, taking 0.84s\n"
    b"[INFO ] stable-diffusion.cpp:3401 - generating image: 2/2 - seed 43\n"
    b"\r  |==================================================| 3/3 - 3.58it/s\x1b[K\n"
    b"[INFO ] stable-diffusion.cpp:3192 - decoding 2 latents\n"
    b"\r  |=========================>                        | 1/2 - 1.00it/s\x1b[K\n"
)


def steps_of(stream: bytes, chunk_size: int) -> list[SamplingStep]:
    splitter, tracker, steps = StreamSplitter(), ProgressTracker(), []
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    for chunk in chunks:
        for text in splitter.feed(chunk):
            if (step := tracker.observe(classify(text))) is not None:
                steps.append(step)
    return steps


def test_only_sampling_bars_count_whatever_the_chunking() -> None:
    expected = [SamplingStep(0, 1, 3), SamplingStep(0, 2, 3), SamplingStep(0, 3, 3), SamplingStep(1, 3, 3)]
    for chunk_size in (1, 7, 64, len(CAPTURED)):
        assert steps_of(CAPTURED, chunk_size) == expected


def test_classify_log_lines_and_bars() -> None:
    assert classify("[ERROR] main.cpp:92   - new_sd_ctx_t failed") == LogLine(
        "ERROR", "main.cpp:92", "new_sd_ctx_t failed"
    )
    assert classify("[WARN ] model.cpp:231  - file x not found").level == "WARN"
    assert classify("  |" + "=" * 50 + "| 4/4 - 2.00s/it") == Bar(4, 4, "s/it")
    assert (
        classify("terminate called after throwing an instance of 'std::invalid_argument'").__class__.__name__ == "Other"
    )


def test_a_bar_is_complete_at_its_erase_code_not_at_the_next_bar() -> None:
    splitter = StreamSplitter()
    first = list(splitter.feed(b"\r  |" + b"=" * 25 + b">" + b" " * 24 + b"| 1/2 - 3.00it/s\x1b[K"))
    assert [classify(text) for text in first] == [Bar(1, 2, "it/s")]
