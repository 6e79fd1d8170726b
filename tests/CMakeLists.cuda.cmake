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
