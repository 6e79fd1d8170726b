# Safetensors checkpoints (core/checkpoint.c); included from tests/CMakeLists.txt.
# test_checkpoint writes its files (valid, hostile, killed mid-write) to a
# fresh temporary folder. checkpoint_torch loads a LeNet-5 checkpoint into
# PyTorch and compares logits; it is skipped (code 77) without torch.
add_executable(test_checkpoint test_checkpoint.c)
target_link_libraries(test_checkpoint PRIVATE nnopt_test_support cmocka m)
add_test(NAME checkpoint COMMAND test_checkpoint)

add_executable(checkpoint_logits checkpoint_logits.c)
target_link_libraries(checkpoint_logits PRIVATE nnopt m)

# Both load plugins at run time: make sure they are built with them.
add_dependencies(test_checkpoint nnopt_backend_cpu nnopt_model_lenet5 nnopt_model_resnet)
add_dependencies(checkpoint_logits nnopt_backend_cpu nnopt_model_lenet5)

# Debian's python3-torch is installed for /usr/bin/python3: prefer it over a
# python3 earlier on PATH (a virtual environment without torch).
find_program(NNOPT_TORCH_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(NNOPT_TORCH_PYTHON python3)
if(NNOPT_TORCH_PYTHON)
  add_test(NAME checkpoint_torch
    COMMAND ${NNOPT_TORCH_PYTHON} ${CMAKE_SOURCE_DIR}/tools/torch_check_checkpoint.py
            --driver $<TARGET_FILE:checkpoint_logits>
            --workdir ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_torch)
else()
  add_test(NAME checkpoint_torch
    COMMAND sh -c "echo 'checkpoint_torch: SKIPPED: no python3 found'; exit 77")
endif()
set_tests_properties(checkpoint_torch PROPERTIES SKIP_RETURN_CODE 77)
