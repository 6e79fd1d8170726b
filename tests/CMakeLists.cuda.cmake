# cuda backend tests (included from tests/CMakeLists.txt), when the plugin is
# built (NNOPT_CUDA, plugins/backends/cuda).
#   cuda_load      the plugin loads everywhere; without a GPU, opening it fails
#                  with one "cuda backend: no CUDA device: <reason>" line.
#   cuda_numerics  every op in f32/f64 against the reference backend, with the
#                  default settings and with the own kernels; without a GPU it
#                  prints "SKIP: no CUDA device (...)" and ctest reports it Skipped.
# test_ref_ops cuda and test_gradcheck cuda need a GPU (they have no skip):
# bench/gpu_check.sh runs them on GPU machines.
if(TARGET nnopt_backend_cuda)
  add_executable(test_cuda_backend test_cuda_backend.c)
  target_link_libraries(test_cuda_backend PRIVATE nnopt_test_support cmocka m)
  add_dependencies(test_cuda_backend nnopt_backend_cuda nnopt_backend_cpu)
  add_test(NAME cuda_load COMMAND test_cuda_backend load)
  add_test(NAME cuda_numerics COMMAND test_cuda_backend numerics)
  add_test(NAME cuda_numerics_own_kernels
           COMMAND test_cuda_backend numerics kernels=own depthwise=cudnn conv_algo=find)
  set_tests_properties(cuda_numerics cuda_numerics_own_kernels PROPERTIES SKIP_RETURN_CODE 77)
endif()

# cuda_graph: the backend's graph replay (plugins/backends/cuda/cuda_graph.c)
# with the CUDA graph calls and op execution as test doubles: no GPU needed.
if(TARGET nnopt_backend_cuda)
  add_executable(test_cuda_graph test_cuda_graph.c
                 ${CMAKE_SOURCE_DIR}/plugins/backends/cuda/cuda_graph.c)
  target_link_libraries(test_cuda_graph PRIVATE nnopt_sdk cmocka)
  target_include_directories(test_cuda_graph PRIVATE
    ${CMAKE_SOURCE_DIR}/plugins/backends/cuda
    $<TARGET_PROPERTY:nnopt_backend_cuda,INCLUDE_DIRECTORIES>)
  add_test(NAME cuda_graph COMMAND test_cuda_graph)
endif()

# Compiled mode (plugins/backends/cuda/cuda_nvrtc.h):
#   cuda_nvrtc_compile   generation and NVRTC for sm_90 and the kernel cache,
#                        no GPU needed.
#   cuda_nvrtc_emulated  the plans and generated kernels run on the CPU (the
#                        kernels compiled as C++), logits against the reference.
#   cuda_nvrtc_numerics  compiled programs' logits against the reference
#                        backend; skipped (77) without a GPU.
if(TARGET nnopt_cuda_nvrtc)
  add_executable(test_cuda_nvrtc test_cuda_nvrtc.c)
  target_link_libraries(test_cuda_nvrtc PRIVATE nnopt_cuda_nvrtc nnopt_test_support cmocka m
                        ${CMAKE_DL_LIBS})
  add_dependencies(test_cuda_nvrtc nnopt_backend_cuda nnopt_backend_cpu)
  add_test(NAME cuda_nvrtc_compile COMMAND test_cuda_nvrtc compile)
  add_test(NAME cuda_nvrtc_emulated COMMAND test_cuda_nvrtc emulated)
  add_test(NAME cuda_nvrtc_numerics COMMAND test_cuda_nvrtc numerics)
  set_tests_properties(cuda_nvrtc_numerics PROPERTIES SKIP_RETURN_CODE 77)
endif()

# bf16 on the cuda backend (tests/test_cuda_bf16.c):
#   cuda_bf16_rounding        the device kernels' bf16 conversions, run on the
#                             host, against include/nnopt/bf16.h; no GPU needed.
#   cuda_bf16_numerics        every op the reference runs in bf16 against it,
#   cuda_bf16_numerics_own_kernels   with the default settings and with the
#                             own kernels, cuDNN's depthwise and benchmarked
#                             algorithms; skipped (77) without a GPU.
#   cuda_bf16_stand_in        the numerics suite run against the blis backend
#                             instead (NNOPT_TEST_CUDA_AS): the test of the test
#                             where there is no GPU.
if(TARGET nnopt_backend_cuda)
  add_executable(test_cuda_bf16 test_cuda_bf16.c support/bf16_compare.c)
  target_link_libraries(test_cuda_bf16 PRIVATE nnopt_test_support cmocka m)
  target_include_directories(test_cuda_bf16 PRIVATE ${CMAKE_SOURCE_DIR}/plugins/backends/cuda)
  add_dependencies(test_cuda_bf16 nnopt_backend_cuda nnopt_backend_cpu nnopt_model_lenet5
    nnopt_technique_precision)
  add_test(NAME cuda_bf16_rounding COMMAND test_cuda_bf16 rounding)
  add_test(NAME cuda_bf16_numerics COMMAND test_cuda_bf16 numerics)
  add_test(NAME cuda_bf16_numerics_own_kernels
           COMMAND test_cuda_bf16 numerics kernels=own depthwise=cudnn conv_algo=find)
  set_tests_properties(cuda_bf16_numerics cuda_bf16_numerics_own_kernels
                       PROPERTIES SKIP_RETURN_CODE 77)
  if(TARGET nnopt_backend_blis)
    add_dependencies(test_cuda_bf16 nnopt_backend_blis)
    add_test(NAME cuda_bf16_stand_in COMMAND test_cuda_bf16 numerics)
    set_tests_properties(cuda_bf16_stand_in PROPERTIES ENVIRONMENT "NNOPT_TEST_CUDA_AS=blis")
  endif()
endif()
