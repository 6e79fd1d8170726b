# int8 quantisation (included from tests/CMakeLists.txt): the blis VNNI
# kernels against the reference int8 kernels, int8 against f32 within the
# quantisation error, and the quantization technique in small pipelines.
if(TARGET nnopt_backend_blis)
  nnopt_core_test(quantization)
  add_dependencies(test_quantization nnopt_technique_quantization nnopt_model_lenet5
    nnopt_model_resnet nnopt_backend_cpu nnopt_backend_blis)
endif()
