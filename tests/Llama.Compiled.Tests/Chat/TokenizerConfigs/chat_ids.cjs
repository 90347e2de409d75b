// How chat_ids.golden.jsonl was made (outside the repository; needs node and the npm registry):
//   npm install --prefix "$TMP/chatgold" @huggingface/tokenizers@0.2.0
//   G=tests/Llama.Compiled.Tests/Chat/TokenizerConfigs; T=../shared/models/tokenizers
//   NODE_PATH="$TMP/chatgold/node_modules" node chat_ids.cjs $T/llama3 $G/Meta-Llama-3-8B-Instruct.{system,nosystem}.golden.txt $G/Llama-3.2-1B-Instruct.{system,nosystem}.golden.txt >  $G/chat_ids.golden.jsonl
//   NODE_PATH="$TMP/chatgold/node_modules" node chat_ids.cjs $T/qwen3 $G/Qwen2.5-0.5B-Instruct.{system,nosystem}.golden.txt >> $G/chat_ids.golden.jsonl
// Tokenizes rendered chat prompts (the *.golden.txt files, rendered by jinja2 as transformers does) with
// @huggingface/tokenizers and add_special_tokens=false — what transformers' apply_chat_template(tokenize=True) does.
const fs = require('fs'), path = require('path');
const { Tokenizer } = require('@huggingface/tokenizers');
const [tokDir, ...files] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer.json'), 'utf8')),
                          JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer_config.json'), 'utf8')));
for (const f of files) {
  const text = fs.readFileSync(f, 'utf8');
  process.stdout.write(JSON.stringify({ file: path.basename(f), ids: tok.encode(text, { add_special_tokens: false }).ids }) + '\n');
}
