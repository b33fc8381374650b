// Placeholder until the safetensors reader lands (same session).
