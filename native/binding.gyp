{
  "targets": [
    {
      "target_name": "pixtable_native",
      "sources": ["pixtable_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=c11"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
