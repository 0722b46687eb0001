# tests/programs/programs.cmake — the example programs under faults and bad input (included by
# examples/CMakeLists.txt where tests are built; needs its smoke data fixture):
#   examples.flags.*      every numeric flag: a strict parse with an error naming flag and value
#   examples.resume.*     --out and --resume: no two runs mixed, no step twice, no damaged or
#                         mismatched checkpoint loaded, token files of another tokenizer refused
#   examples.full_disk.*  every file the programs write, on a full disk (/dev/full; a real
#                         tmpfs where one can be mounted)
#   examples.kill_resume  SIGKILL at random moments during checkpoint writes, then resume:
#                         bit-identical to an uninterrupted run
#   examples.quality_verdict.*  quality_test's paired 95% interval and verdict on chosen losses
#                         (a stand-in trainer), and runs spread over calls (--resume-runs)
#   examples.build_corpus.*  scripts/build_corpus.py on a made-up tarball and catch2's docs:
#                         what is kept or dropped and why, the split, the manifest; its errors
#   examples.bpe.*        sub-word tokens (where libsentencepiece exists): train, resume and
#                         generate on them; another model, a missing one, mixed files refused
# Each is CI-sized: one layer of C = 64, a few steps; all of them take about half a minute.
set(_programs "${PROJECT_SOURCE_DIR}/tests/programs")
set(_work "${CMAKE_CURRENT_BINARY_DIR}/program_tests")

# Writes token files of any tokenizer and vocabulary (resume.sh's tokenizer and data cases).
add_executable(ra_write_tokens "${_programs}/write_tokens.cpp")
target_link_libraries(ra_write_tokens PRIVATE ra::core)
ra_target_warnings(ra_write_tokens)

# The logits of a checkpoint's model on the CPU (hf_mapping.py compares them with transformers').
add_executable(ra_logits "${_programs}/ra_logits.cpp")
target_link_libraries(ra_logits PRIVATE ra::cpu)
ra_target_warnings(ra_logits)

# ---- flags: each must fail with a message naming the flag and the value given -------------
set(_train $<TARGET_FILE:train_gpt2> --data "${_smoke}/data")
function(ra_flag_test name pattern)
  add_test(NAME examples.flags.${name}
           COMMAND bash "${_programs}/expect_failure.sh" "${pattern}" ${ARGN})
endfunction()
ra_flag_test(R_wraps "--R '4294967300' is out of range" ${_train} --R 4294967300 --steps 1)
ra_flag_test(seq_huge "--seq '4294967296' is out of range" ${_train} --seq 4294967296 --steps 1)
ra_flag_test(seq_beyond_data "train.bin' has [0-9]+ tokens, expected more than --seq 1000000"
             ${_train} --seq 1000000 --steps 1)
set_tests_properties(examples.flags.seq_beyond_data PROPERTIES FIXTURES_REQUIRED ra_smoke_data)
ra_flag_test(batch_negative "--batch '-1' is out of range" ${_train} --batch -1 --steps 1)
ra_flag_test(eval_every_negative "--eval-every '-1' is out of range" ${_train} --eval-every -1
             --steps 1)
ra_flag_test(top_k_negative "--top-k '-1' is out of range" ${_train} --top-k -1 --steps 1)
ra_flag_test(time_budget_negative "--time-budget-s '-1' is out of range" ${_train}
             --time-budget-s -1)
ra_flag_test(lr_inf "--lr 'inf' is not finite" ${_train} --lr inf --steps 1)
ra_flag_test(lr_nan "--lr 'nan' is not finite" ${_train} --lr nan --steps 1)
ra_flag_test(steps_trailing "--steps '10x' is not an integer" ${_train} --steps 10x)
ra_flag_test(layers_space "--layers ' 3' is not an integer" ${_train} --layers " 3" --steps 1)
ra_flag_test(dropout_one "--dropout '1' is out of range, expected a number in \\[0, 1\\)"
             ${_train} --dropout 1 --steps 1)
ra_flag_test(seed_negative "--seed '-3' is not an integer" ${_train} --seed -3 --steps 1)
ra_flag_test(val_percent_trailing "--val-percent '10abc' is not an integer"
             $<TARGET_FILE:prepare_data> --input "${PROJECT_SOURCE_DIR}/data/sample"
             --out "${_work}/flags_prepare" --val-percent 10abc)
ra_flag_test(block_T_text "--T 'abc' is not an integer" $<TARGET_FILE:gpt2_attention_block>
             --T abc)
ra_flag_test(block_R_wraps "--R '4294967300' is out of range"
             $<TARGET_FILE:gpt2_attention_block> --R 4294967300)
ra_flag_test(seeds_repeated "--seeds '1,1' repeats 1, expected distinct values"
             $<TARGET_FILE:quality_test> --data "${_smoke}/data" --seeds 1,1)
ra_flag_test(quality_budget_text "--token-budget '5k' is not an integer"
             $<TARGET_FILE:quality_test> --data "${_smoke}/data" --token-budget 5k)
ra_flag_test(optimizer_unknown "--optimizer 'adam': optimizer: got 'adam', expected 'adamw' or 'adamw_spam'"
             ${_train} --optimizer adam --steps 1)
ra_flag_test(spam_threshold_negative "--spam-threshold '-1' is out of range" ${_train}
             --optimizer adamw_spam --spam-threshold -1 --steps 1)
ra_flag_test(spam_interval_text "--spam-interval '5x' is not an integer" ${_train}
             --optimizer adamw_spam --spam-interval 5x --steps 1)
ra_flag_test(spam_without_spam "--spam-warmup is a setting of SPAM, expected --optimizer adamw_spam"
             ${_train} --spam-warmup 10 --steps 1)
ra_flag_test(spam_warmup_beyond_interval "spam warmup.*20.*at most the reset interval 10"
             ${_train} --optimizer adamw_spam --spam-interval 10 --spam-warmup 20 --steps 1)
set_tests_properties(examples.flags.spam_without_spam examples.flags.spam_warmup_beyond_interval
                     PROPERTIES FIXTURES_REQUIRED ra_smoke_data)
ra_flag_test(vocab_too_large "--vocab '70000' is too large: token files store uint16"
             $<TARGET_FILE:prepare_data> --input "${PROJECT_SOURCE_DIR}/data/sample"
             --out "${_work}/flags_vocab" --tokenizer sentencepiece --vocab 70000)
ra_flag_test(tokenizer_unknown "--tokenizer 'gpt2', expected byte or sentencepiece"
             $<TARGET_FILE:prepare_data> --input "${PROJECT_SOURCE_DIR}/data/sample"
             --out "${_work}/flags_tokenizer" --tokenizer gpt2)

# ---- scripted cases: bash SCRIPT BIN DATA WORK CASE ---------------------------------------
function(ra_program_test script name)
  add_test(NAME examples.${script}.${name}
           COMMAND bash "${_programs}/${script}.sh" "$<TARGET_FILE_DIR:train_gpt2>"
                   "${_smoke}/data" "${_work}/${script}_${name}" ${name})
  set_tests_properties(examples.${script}.${name} PROPERTIES FIXTURES_REQUIRED ra_smoke_data
                                                             SKIP_RETURN_CODE 77 TIMEOUT 120)
endfunction()
foreach(_case out_folder cut_metrics fallback mismatch schedule other_data tokenizer optimizer)
  ra_program_test(resume ${_case})
endforeach()
foreach(_case metrics summary_json summary_tsv gates checkpoint stdout tokens manifest quality
              tmpfs)
  ra_program_test(full_disk ${_case})
endforeach()
foreach(_case better none worse resume per_seed)
  ra_program_test(quality_verdict ${_case})
endforeach()
foreach(_case corpus errors)
  ra_program_test(build_corpus ${_case})
endforeach()
add_test(NAME examples.kill_resume
         COMMAND bash "${_programs}/kill_resume.sh" "$<TARGET_FILE_DIR:train_gpt2>"
                 "${_smoke}/data" "${_work}/kill_resume")
set_tests_properties(examples.kill_resume PROPERTIES FIXTURES_REQUIRED ra_smoke_data TIMEOUT 180)

# ---- sub-word tokens: a SentencePiece model of the sample, and the programs on its tokens ----
if(RA_HAVE_SENTENCEPIECE)
  add_test(NAME examples.prepare_data_bpe
           COMMAND prepare_data --input "${PROJECT_SOURCE_DIR}/data/sample" --ext .rst
                   --out "${_smoke}/data_bpe" --tokenizer sentencepiece --vocab 400 --threads 2)
  set_tests_properties(examples.prepare_data_bpe PROPERTIES FIXTURES_SETUP ra_smoke_bpe)
  foreach(_case pipeline wrong_model missing_model mixed byte_resume)
    add_test(NAME examples.bpe.${_case}
             COMMAND bash "${_programs}/bpe.sh" "$<TARGET_FILE_DIR:train_gpt2>"
                     "${_smoke}/data_bpe" "${_work}/bpe_${_case}" ${_case})
    set_tests_properties(examples.bpe.${_case} PROPERTIES FIXTURES_REQUIRED ra_smoke_bpe
                                                           TIMEOUT 120)
  endforeach()
endif()
