{
  "targets": [
    {
      "target_name": "selfrag",
      "sources": [
        "native/addon.cpp",
        "native/context.cpp",
        "native/model.cpp",
        "native/output_extractor.cpp",
        "native/reflection_kernel.cpp",
        "native/segment_stops.cpp",
        "native/segment_scorer.cpp",
        "native/sequence_engine.cpp",
        "native/step_loop.cpp",
        "native/cuda/no_cuda_kernels.cpp"
      ],
      "include_dirs": [
        "<!(node scripts/llama-paths.mjs addon-api)",
        "<!(node scripts/llama-paths.mjs include)",
        "<!(node scripts/llama-paths.mjs ggml-include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3"],
      "libraries": [
        "<!(node scripts/llama-paths.mjs cpu-lib)",
        "-Wl,-rpath,<!(node scripts/llama-paths.mjs cpu-libdir)"
      ],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "MACOSX_DEPLOYMENT_TARGET": "11.0"
      },
      "msvs_settings": {"VCCLCompilerTool": {"ExceptionHandling": 1}}
    }
  ]
}
