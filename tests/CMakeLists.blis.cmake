# blis backend tests (included from tests/CMakeLists.txt): every op against the
# reference backend, plus the shared hand-computed and gradient checks run on
# blis. They need the blis plugin built.
if(TARGET nnopt_backend_blis)
  add_executable(test_blis_vs_ref test_blis_vs_ref.c)
  target_link_libraries(test_blis_vs_ref PRIVATE nnopt_test_support cmocka m)
  add_dependencies(test_blis_vs_ref nnopt_backend_blis nnopt_backend_cpu)
  add_test(NAME blis_vs_ref COMMAND test_blis_vs_ref)
  if(TARGET test_gradcheck)
    add_test(NAME gradcheck_blis COMMAND test_gradcheck blis)
  endif()
  if(TARGET test_ref_ops)
    add_test(NAME ref_ops_blis COMMAND test_ref_ops blis)
  endif()
endif()
# Winograd convolutions against the reference, with the f32 errors measured.
if(TARGET nnopt_backend_blis)
  add_executable(test_blis_winograd test_blis_winograd.c)
  target_link_libraries(test_blis_winograd PRIVATE nnopt_test_support cmocka m)
  add_dependencies(test_blis_winograd nnopt_backend_blis nnopt_backend_cpu)
  add_test(NAME blis_winograd COMMAND test_blis_winograd)
endif()
# The pointwise kernels built into the test and called directly, for the
# forward pass's relu epilogue (no op reaches it yet).
if(TARGET nnopt_backend_blis)
  find_package(OpenMP REQUIRED COMPONENTS C)
  set(blis_dir ${CMAKE_SOURCE_DIR}/plugins/backends/blis)
  add_executable(test_blis_pointwise test_blis_pointwise.c ${blis_dir}/blis_pointwise.c)
  target_include_directories(test_blis_pointwise PRIVATE ${blis_dir})
  target_link_libraries(test_blis_pointwise PRIVATE nnopt_test_support cmocka OpenMP::OpenMP_C m)
  add_dependencies(test_blis_pointwise nnopt_backend_cpu)
  add_test(NAME blis_pointwise COMMAND test_blis_pointwise)
endif()
