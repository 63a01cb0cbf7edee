int privsdk_placeholder() { return 0; }
