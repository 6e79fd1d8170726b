# bf16 (included from tests/CMakeLists.txt): conversion rounding, the
# reference's bf16 ops against its f32 ops, the blis bf16 kernels against the
# reference, and the precision technique converting a trained run to bf16.
if(TARGET nnopt_backend_blis)
  nnopt_core_test(bf16)
  add_dependencies(test_bf16 nnopt_backend_blis nnopt_backend_cpu nnopt_model_lenet5
    nnopt_technique_precision)
endif()
