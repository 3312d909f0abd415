# Checks minimax-cli from the outside, as a user or a script would run it.
#   cmake -DCLI=<minimax-cli> -DMODEL=<dir with tokenizer> -DNOTOK=<dir without> -DWORK=<dir>
#         -DCASE=<generate|tokens|score|info|chat|usage|errors> -P cli_test.cmake
# JSON output is parsed with string(JSON), so a malformed object fails the test.
cmake_minimum_required(VERSION 3.22)  # policies for script mode (IN_LIST)

function(run_cli out_var code_var)
  execute_process(COMMAND ${CLI} ${ARGN}
    RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err ${RUN_INPUT})
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${code_var} "${code}" PARENT_SCOPE)
  set(last_stderr "${err}" PARENT_SCOPE)
endfunction()

function(expect_ok code out)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "minimax-cli exited with ${code}\nstdout: ${out}\nstderr: ${last_stderr}")
  endif()
endfunction()

# json_get(var json key...) fails the test when the path is missing or the JSON is malformed.
function(json_get var json)
  string(JSON value ERROR_VARIABLE err GET "${json}" ${ARGN})
  if(err)
    message(FATAL_ERROR "bad JSON output (${ARGN}): ${err}\n${json}")
  endif()
  set(${var} "${value}" PARENT_SCOPE)
endfunction()

function(json_length var json)
  string(JSON value ERROR_VARIABLE err LENGTH "${json}" ${ARGN})
  if(err)
    message(FATAL_ERROR "bad JSON output (${ARGN}): ${err}\n${json}")
  endif()
  set(${var} "${value}" PARENT_SCOPE)
endfunction()

function(expect_finish_reason json allowed)
  json_get(reason "${json}" finish_reason)
  if(NOT reason IN_LIST allowed)
    message(FATAL_ERROR "finish_reason '${reason}' not in ${allowed}\n${json}")
  endif()
endfunction()

# Every generate --json object has the same shape; check it and the counts agree.
function(check_generate_json json max_tokens)
  json_get(text "${json}" text)
  json_length(n_tokens "${json}" tokens)
  json_get(generated "${json}" generated_tokens)
  json_get(prompt "${json}" prompt_tokens)
  json_get(total_ms "${json}" timings total_ms)
  json_get(ttft "${json}" timings time_to_first_token_ms)
  if(NOT n_tokens EQUAL generated OR generated GREATER max_tokens OR generated LESS 1)
    message(FATAL_ERROR "token counts disagree: ${n_tokens} ids, generated ${generated}, max ${max_tokens}")
  endif()
  if(prompt LESS 1 OR total_ms LESS 0 OR ttft LESS 0)
    message(FATAL_ERROR "implausible counts or timings\n${json}")
  endif()
endfunction()

if(CASE STREQUAL "generate")
  run_cli(out code generate --model ${MODEL} --prompt "Once upon a time" --max-tokens 8
    --temperature 0.8 --top-p 0.9 --seed 7 --json --quiet)
  expect_ok(${code} "${out}")
  check_generate_json("${out}" 8)
  expect_finish_reason("${out}" "length;eos;stop_string;stop_token")
  # Sampling with the same seed is reproducible.
  run_cli(again code generate --model ${MODEL} --prompt "Once upon a time" --max-tokens 8
    --temperature 0.8 --top-p 0.9 --seed 7 --json --quiet)
  json_get(t1 "${out}" tokens)
  json_get(t2 "${again}" tokens)
  if(NOT t1 STREQUAL t2)
    message(FATAL_ERROR "same seed, different tokens: ${t1} vs ${t2}")
  endif()

elseif(CASE STREQUAL "tokens")
  # A model without a tokenizer works from token ids; --ignore-eos makes the length exact.
  run_cli(out code generate --model ${NOTOK} --prompt-tokens 1,2,3,4,5 --max-tokens 6
    --ignore-eos --json --quiet)
  expect_ok(${code} "${out}")
  check_generate_json("${out}" 6)
  expect_finish_reason("${out}" "length")
  json_get(generated "${out}" generated_tokens)
  json_get(prompt "${out}" prompt_tokens)
  if(NOT generated EQUAL 6 OR NOT prompt EQUAL 5)
    message(FATAL_ERROR "expected 5 prompt and 6 generated tokens\n${out}")
  endif()

elseif(CASE STREQUAL "score")
  file(WRITE ${WORK}/score.txt "User: Write a poem about penguins\n\nAssistant: On the peak of the Antarctic iceberg, penguins dance with tiny wings.\n")
  run_cli(out code score ${WORK}/score.txt --model ${MODEL} --json --quiet)
  expect_ok(${code} "${out}")
  json_get(tokens "${out}" tokens)
  json_get(scored "${out}" scored_tokens)
  json_get(ppl "${out}" perplexity)
  math(EXPR expect_scored "${tokens} - 1")
  if(tokens LESS 10 OR NOT scored EQUAL expect_scored OR NOT ppl GREATER 1)
    message(FATAL_ERROR "implausible score output\n${out}")
  endif()

elseif(CASE STREQUAL "info")
  run_cli(out code info --model ${MODEL} --json)
  expect_ok(${code} "${out}")
  json_get(layers "${out}" layers)
  json_get(kinds "${out}" layer_kinds)
  string(LENGTH "${kinds}" n_kinds)
  if(layers LESS 1 OR NOT n_kinds EQUAL layers)
    message(FATAL_ERROR "layer_kinds does not match layers\n${out}")
  endif()

elseif(CASE STREQUAL "chat")
  file(WRITE ${WORK}/chat-input.txt "Hello there\n/reset\nWrite a poem about penguins\n/quit\n")
  set(RUN_INPUT INPUT_FILE ${WORK}/chat-input.txt)
  run_cli(out code chat --model ${MODEL} --max-tokens 6 --quiet)
  expect_ok(${code} "${out}")
  if(NOT last_stderr MATCHES "history cleared")
    message(FATAL_ERROR "/reset was not acknowledged\nstderr: ${last_stderr}")
  endif()

elseif(CASE STREQUAL "usage")
  # Each bad command line ("arguments|expected message"): exit status 2 and a message
  # naming the problem.
  set(cases
    "generate --temperature abc|--temperature expects"
    "generate --top-p 0|--top-p expects"
    "generate --frobnicate|unknown option '--frobnicate'"
    "frobnicate|unknown command 'frobnicate'"
    "--json|missing command"
    "generate --prompt a --prompt-file b|only one of"
    "generate --max-tokens|--max-tokens needs a value"
    "generate --backend tpu|--backend expects"
    "chat --json|not available for 'chat'"
    "info extra|unexpected argument 'extra'"
    "generate --system hi|--system applies to")
  foreach(c IN LISTS cases)
    string(FIND "${c}" "|" bar)
    string(SUBSTRING "${c}" 0 ${bar} args)
    math(EXPR bar "${bar} + 1")
    string(SUBSTRING "${c}" ${bar} -1 expected)
    separate_arguments(args UNIX_COMMAND "${args}")
    run_cli(out code ${args})
    if(NOT code EQUAL 2 OR NOT last_stderr MATCHES "${expected}")
      message(FATAL_ERROR "minimax-cli ${args}: exit ${code} (want 2), stderr: ${last_stderr}")
    endif()
  endforeach()

elseif(CASE STREQUAL "errors")
  # Library errors: exit status 1 and the library's message.
  run_cli(out code info --model ${WORK}/no-such-model)
  if(NOT code EQUAL 1 OR NOT last_stderr MATCHES "loading model")
    message(FATAL_ERROR "missing model: exit ${code}, stderr: ${last_stderr}")
  endif()
  run_cli(out code generate --model ${NOTOK} --prompt "text needs a tokenizer" --quiet)
  if(NOT code EQUAL 1 OR last_stderr STREQUAL "")
    message(FATAL_ERROR "text prompt without a tokenizer: exit ${code}, stderr: ${last_stderr}")
  endif()
  run_cli(out code generate --model ${NOTOK} --prompt-tokens 1,999999 --quiet)
  if(NOT code EQUAL 1 OR last_stderr STREQUAL "")
    message(FATAL_ERROR "token out of range: exit ${code}, stderr: ${last_stderr}")
  endif()

else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()
