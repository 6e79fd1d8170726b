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
