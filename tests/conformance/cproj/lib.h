long count_bytes(const char *path);
