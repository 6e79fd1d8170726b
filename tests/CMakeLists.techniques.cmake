# Technique plugins (included from tests/CMakeLists.txt): distillation losses
# against finite differences, activation swap and precision rewrites, and a
# small teacher -> student pipeline on generated data.
nnopt_core_test(techniques)
add_dependencies(test_techniques nnopt_technique_distillation nnopt_technique_precision
  nnopt_technique_activation_swap nnopt_model_lenet5 nnopt_backend_cpu)
