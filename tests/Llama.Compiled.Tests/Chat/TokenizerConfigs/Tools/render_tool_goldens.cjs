// Renders the tool-calling goldens of ChatToolTemplateTests with a real Jinja implementation.
//
// How to run (outside the build: the tests only read the committed *.golden.txt files; needs node and the npm registry):
//   npm install --prefix "$TMP/jinja" @huggingface/jinja@0.5.11
//   cd tests/Llama.Compiled.Tests/Chat/TokenizerConfigs/Tools
//   NODE_PATH="$TMP/jinja/node_modules" node render_tool_goldens.cjs [path/to/shared/models/tokenizers]
//
// conversations.json holds the tools and the conversations in Hugging Face's message format (OpenAI-style tools,
// assistant messages with tool_calls whose arguments are objects, role "tool" results whose content is a string).
// Each template below renders each conversation, with and without a system message, as transformers'
// apply_chat_template(messages, tools=tools, add_generation_prompt=True) does, into
// <model>.<conversation>.<system|nosystem>[.<variant>].golden.txt. @huggingface/jinja trims blocks and their leading
// whitespace as transformers' environment does (trim_blocks, lstrip_blocks); its tojson writes what transformers'
// tojson (json.dumps, ensure_ascii=False) writes. The date is fixed, as render_goldens.py fixes it.
const fs = require('fs'), path = require('path');
const { Template } = require('@huggingface/jinja');

const here = __dirname;
const tokenizers = process.argv[2] ?? path.join(here, '..', '..', '..', '..', '..', '..', 'shared', 'models', 'tokenizers');
const input = JSON.parse(fs.readFileSync(path.join(here, 'conversations.json'), 'utf8'));

function config(file) {
  const c = JSON.parse(fs.readFileSync(file, 'utf8'));
  const token = (t) => (t == null ? '' : typeof t === 'string' ? t : t.content);
  return { template: c.chat_template, bos_token: token(c.bos_token), eos_token: token(c.eos_token) };
}

const models = {
  'Llama-3.2-1B-Instruct': config(path.join(here, '..', 'Llama-3.2-1B-Instruct.json')),
  'Qwen2.5-0.5B-Instruct': config(path.join(here, '..', 'Qwen2.5-0.5B-Instruct.json')),
  'Qwen3': config(path.join(tokenizers, 'qwen3', 'tokenizer_config.json')),
};

// [model, conversation, variant, extra variables]; each with and without the system message.
const renders = [];
for (const model of Object.keys(models)) {
  for (const conversation of ['ask', 'call', 'answer'])
    renders.push([model, conversation, null, { tools: input.tools }]);
  // What the conversation looks like when the request has no tools (ToolMode.None): the history keeps its format.
  renders.push([model, 'answer', 'notools', {}]);
}
// Llama 3.1+ takes one call per message; Qwen takes several. Qwen3 cuts its reasoning (<think>) out of the history.
for (const model of ['Qwen2.5-0.5B-Instruct', 'Qwen3'])
  for (const conversation of ['parallel', 'thinkcall', 'think'])
    renders.push([model, conversation, null, { tools: input.tools }]);
// Llama with tools_in_user_message=false: the tools go into the system message.
for (const conversation of ['ask', 'call'])
  renders.push(['Llama-3.2-1B-Instruct', conversation, 'systools', { tools: input.tools, tools_in_user_message: false }]);

for (const [model, conversation, variant, extra] of renders) {
  const { template, bos_token, eos_token } = models[model];
  const compiled = new Template(template);
  for (const system of ['system', 'nosystem']) {
    const messages = (system === 'system' ? [input.system] : []).concat(input.conversations[conversation]);
    const text = compiled.render({
      messages: JSON.parse(JSON.stringify(messages)),
      add_generation_prompt: true,
      bos_token,
      eos_token,
      date_string: '26 Jul 2024',
      ...JSON.parse(JSON.stringify(extra)),
    });
    const name = [model, conversation, system, variant].filter((x) => x).join('.') + '.golden.txt';
    fs.writeFileSync(path.join(here, name), text);
    process.stdout.write(`${name}\n`);
  }
}
