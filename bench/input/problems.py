"""Why an example is known to be bad: the codes a source or a batch decoder sets and the
guard (bench.input.guard) turns into messages. TensorFlow-free, so that decode worker
processes (bench.input.decode_worker) can set them."""

from __future__ import annotations

PROBLEM_NONE = 0
PROBLEM_UNREADABLE = 1
# Set by a batch decoder, which marks a bad image instead of failing (2 and 4: the guard's).
PROBLEM_UNDECODABLE = 3
PROBLEMS = {
    PROBLEM_UNREADABLE: "unreadable record (the shard is truncated or corrupt from here on)",
}
