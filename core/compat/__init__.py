"""What existing clients send (AUTOMATIC1111's /sdapi/v1, OpenAI's /v1/images, sd-server's conventions),
translated into ordinary jobs on the one queue, and the answers those clients expect."""
