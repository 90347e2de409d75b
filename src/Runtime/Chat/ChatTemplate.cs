using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;

namespace Llama.Compiled;

/// <summary>
/// Turns a conversation into the prompt text a chat model was trained on, and says how the model
/// ends its turn. Implementations reproduce, string for string, what Hugging Face's
/// <c>apply_chat_template</c> renders from the model's Jinja <c>chat_template</c> for system, user
/// and assistant messages; there is no Jinja engine: <see cref="FromTokenizerConfig"/> recognises the
/// family of a <c>tokenizer_config.json</c>'s template by its markers.
/// </summary>
/// <remarks>
/// The families: <see cref="Llama2ChatTemplate"/> (<c>[INST]</c>, <c>&lt;&lt;SYS&gt;&gt;</c>),
/// <see cref="Llama3ChatTemplate"/> (header ids), <see cref="ChatMLChatTemplate"/> (<c>&lt;|im_start|&gt;</c>:
/// Qwen, SmolLM2), <see cref="ZephyrChatTemplate"/> (<c>&lt;|user|&gt;</c>: TinyLlama-Chat) and
/// <see cref="PlainChatTemplate"/> (<c>User: …\nAssistant:</c>, for models trained without one, such
/// as stories260K). The Llama 3.1+ and Qwen templates also render tools, calls and results
/// (<see cref="Render(IEnumerable{ChatMessage}, IReadOnlyList{AIFunctionDeclaration}?, bool)"/>, <see cref="ToolCallFormat"/>);
/// the others do not.
/// </remarks>
public abstract partial record ChatTemplate
{
    /// <summary>Short name of the family (<c>llama2</c>, <c>llama3</c>, <c>chatml</c>, <c>zephyr</c>, <c>plain</c>), as <see cref="FromName"/> takes it.</summary>
    public abstract string Name { get; }

    /// <summary>
    /// Strings that end the assistant's turn: generation stops before them and they are not part of
    /// the answer. Those that are one special token in the vocabulary also stop at token level.
    /// </summary>
    public abstract IReadOnlyList<string> StopSequences { get; }

    /// <summary>
    /// Marker strings of the template that are single special tokens in the model's vocabulary
    /// (such as <c>&lt;|im_start|&gt;</c>); the prompt encoder maps them to their ids instead of
    /// tokenizing their characters.
    /// </summary>
    public abstract IReadOnlyList<string> SpecialTokens { get; }

    /// <summary>True when the rendered text starts with the BOS token's text (<c>&lt;s&gt;</c>, <c>&lt;|begin_of_text|&gt;</c>).</summary>
    public abstract bool BosInText { get; }

    /// <summary>
    /// True when the model's BOS id goes before the rendered text's tokens (as llama.cpp does for
    /// SentencePiece models). False for templates that have BOS in the text, or whose models use none.
    /// </summary>
    public abstract bool PrependBos { get; }

    /// <summary>
    /// Renders <paramref name="messages"/> (system, user and assistant messages; their text content).
    /// </summary>
    /// <param name="messages">The conversation, oldest first.</param>
    /// <param name="addGenerationPrompt">Whether to end with the opening of an assistant turn, for the model to continue.</param>
    /// <exception cref="ArgumentException">The conversation does not fit the template (Llama 2 needs alternating user/assistant turns).</exception>
    public abstract string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true);

    /// <summary>
    /// How the model writes function calls, for templates that render tools (Llama 3.1+, Qwen); <see langword="null"/> for
    /// those that have no tool format.
    /// </summary>
    public virtual ToolCallFormat? ToolCallFormat => null;

    /// <summary>Whether <see cref="Render(IEnumerable{ChatMessage}, IReadOnlyList{AIFunctionDeclaration}?, bool)"/> takes tools.</summary>
    public bool SupportsTools => ToolCallFormat is not null;

    /// <summary>
    /// Renders <paramref name="messages"/> with the declarations of <paramref name="tools"/> in the template's own place and
    /// format, as the model's Jinja template does with <c>apply_chat_template(messages, tools=…)</c>. Assistant messages
    /// with <see cref="FunctionCallContent"/> are rendered as the model writes calls, and <see cref="FunctionResultContent"/>
    /// (in <see cref="ChatRole.Tool"/> messages) as the template's tool results. A tool is
    /// <c>{"type": "function", "function": {"name", "description", "parameters"}}</c>, its parameters the function's
    /// <see cref="AIFunctionDeclaration.JsonSchema"/>; a result that is not a string is written as compact JSON.
    /// </summary>
    /// <param name="messages">The conversation, oldest first.</param>
    /// <param name="tools">The functions the model may call; <see langword="null"/> or empty for none.</param>
    /// <param name="addGenerationPrompt">Whether to end with the opening of an assistant turn, for the model to continue.</param>
    /// <exception cref="NotSupportedException">Tools were given and the template has no tool format (<see cref="SupportsTools"/> is false).</exception>
    /// <exception cref="ArgumentException">The conversation does not fit the template (Llama 3.1 takes one call per message).</exception>
    public virtual string Render(IEnumerable<ChatMessage> messages, IReadOnlyList<AIFunctionDeclaration>? tools, bool addGenerationPrompt = true)
    {
        ThrowIfToolsUnsupported(tools);
        return Render(messages, addGenerationPrompt);
    }

    /// <summary>Throws when <paramref name="tools"/> are given to a template without a tool format.</summary>
    private protected void ThrowIfToolsUnsupported(IReadOnlyList<AIFunctionDeclaration>? tools)
    {
        if (tools is { Count: > 0 })
        {
            throw new NotSupportedException(
                $"The '{Name}' chat template has no format for tools; tool calling is supported by the Llama 3.1+ and Qwen (Hermes) templates. "
                + "Leave ChatOptions.Tools empty or set ChatOptions.ToolMode to ChatToolMode.None.");
        }
    }

    /// <summary>The Llama 2 chat template (meta-llama/Llama-2-*-chat-hf).</summary>
    public static Llama2ChatTemplate Llama2 => new();

    /// <summary>The Llama 3 instruct template (Meta-Llama-3-*-Instruct), without 3.1's date preamble.</summary>
    public static Llama3ChatTemplate Llama3 => new();

    /// <summary>The Llama 3.1/3.2 instruct template: a system turn with the knowledge-cutoff and today's date always comes first.</summary>
    public static Llama3ChatTemplate Llama31 => new() { DatePreamble = true };

    /// <summary>ChatML without a default system prompt (use <c>with { DefaultSystemPrompt = … }</c> for Qwen's or SmolLM2's).</summary>
    public static ChatMLChatTemplate ChatML => new();

    /// <summary>Qwen2.5's template: ChatML with its default system prompt and Hermes-style tool calls.</summary>
    public static ChatMLChatTemplate Qwen25 => new() { DefaultSystemPrompt = ChatMLChatTemplate.Qwen25SystemPrompt, HermesToolCalls = true };

    /// <summary>Qwen3's template: ChatML without a default system prompt, with Hermes-style tool calls and reasoning blocks.</summary>
    public static ChatMLChatTemplate Qwen3 => new() { HermesToolCalls = true, ThinkBlocks = true };

    /// <summary>The Zephyr template (TinyLlama-1.1B-Chat).</summary>
    public static ZephyrChatTemplate Zephyr => new();

    /// <summary>A plain-text <c>User: …\nAssistant:</c> template, for models without a chat template.</summary>
    public static PlainChatTemplate Plain => new();

    /// <summary>The names <see cref="FromName"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["llama2", "llama3", "llama3.1", "chatml", "qwen2.5", "qwen3", "zephyr", "plain"];

    /// <summary>
    /// A template chosen by name: <c>llama2</c>, <c>llama3</c>, <c>llama3.1</c> (also for 3.2),
    /// <c>chatml</c>, <c>qwen2.5</c>, <c>qwen3</c>, <c>zephyr</c> or <c>plain</c> (case-insensitive; <c>-</c> and <c>_</c> ignored).
    /// </summary>
    /// <exception cref="ArgumentException">Not one of <see cref="Names"/>.</exception>
    public static ChatTemplate FromName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Replace("-", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal).ToLowerInvariant() switch
        {
            "llama2" => Llama2,
            "llama3" => Llama3,
            "llama3.1" or "llama31" or "llama3.2" or "llama32" => Llama31,
            "chatml" => ChatML,
            "qwen2.5" or "qwen25" or "qwen2" => Qwen25,
            "qwen3" => Qwen3,
            "zephyr" => Zephyr,
            "plain" => Plain,
            _ => throw new ArgumentException($"Unknown chat template '{name}'; expected one of {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>
    /// Recognises the family of a Jinja <c>chat_template</c> by its markers and returns the matching
    /// template (with the default system prompt, date preamble and BOS/EOS strings it implies), or
    /// <see langword="null"/> when the family is not one of those supported.
    /// </summary>
    /// <param name="jinjaTemplate">The <c>chat_template</c> text.</param>
    /// <param name="bosToken">The tokenizer's <c>bos_token</c>, when known.</param>
    /// <param name="eosToken">The tokenizer's <c>eos_token</c>, when known.</param>
    public static ChatTemplate? Recognize(string jinjaTemplate, string? bosToken = null, string? eosToken = null)
    {
        ArgumentNullException.ThrowIfNull(jinjaTemplate);
        string t = jinjaTemplate;
        if (t.Contains("<|start_header_id|>", StringComparison.Ordinal))
        {
            // 3.1 and 3.2 open with a system turn that states the knowledge cutoff and today's date;
            // 3.2 asks transformers for today's date (strftime_now), 3.1 has a fixed one.
            bool preamble = t.Contains("Cutting Knowledge Date", StringComparison.Ordinal);
            return new Llama3ChatTemplate
            {
                DatePreamble = preamble,
                DateString = preamble && t.Contains("strftime_now", StringComparison.Ordinal) ? null : Llama3ChatTemplate.DefaultDateString,
            };
        }
        if (t.Contains("<|im_start|>", StringComparison.Ordinal))
        {
            // The default system prompt, when the template inserts one: '<|im_start|>system\n…<|im_end|>'
            // as one string literal (the newline written as the escape or as itself).
            Match match = DefaultSystemPromptPattern().Match(t);
            // Qwen2.5 and Qwen3 render tools and calls Hermes-style: <tool_call>…</tool_call>.
            return new ChatMLChatTemplate
            {
                DefaultSystemPrompt = match.Success ? match.Groups[1].Value : null,
                HermesToolCalls = t.Contains("<tool_call>", StringComparison.Ordinal),
                ThinkBlocks = t.Contains("<tool_call>", StringComparison.Ordinal) && t.Contains("</think>", StringComparison.Ordinal),
            };
        }
        if (t.Contains("<|user|>", StringComparison.Ordinal) && t.Contains("<|assistant|>", StringComparison.Ordinal)
            && !t.Contains("<|end|>", StringComparison.Ordinal))
        {
            return new ZephyrChatTemplate { EosToken = NonEmpty(eosToken) ?? "</s>" };
        }
        if (t.Contains("[INST]", StringComparison.Ordinal) && t.Contains("<<SYS>>", StringComparison.Ordinal))
        {
            return new Llama2ChatTemplate { BosToken = NonEmpty(bosToken) ?? "<s>", EosToken = NonEmpty(eosToken) ?? "</s>" };
        }
        return null;
    }

    /// <summary>The file <see cref="FromTokenizerConfig"/> reads in a model folder.</summary>
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>
    /// The template of a model from its <c>tokenizer_config.json</c>'s <c>chat_template</c>, or from a GGUF file's
    /// <c>tokenizer.chat_template</c> (see <see cref="Recognize"/>). A model with no <c>tokenizer_config.json</c>, or one without a
    /// <c>chat_template</c> (a base model such as stories260K), gets <see cref="Plain"/>.
    /// </summary>
    /// <param name="path">
    /// The <c>tokenizer_config.json</c> file (any <c>.json</c> file but <c>config.json</c> is read as one), a <c>.gguf</c>
    /// file (its metadata's template), the model's folder, or another file in it (the weights, <c>config.json</c>).
    /// </param>
    /// <exception cref="NotSupportedException">The <c>chat_template</c> is not of a supported family; pick one with <see cref="FromName"/>.</exception>
    /// <exception cref="ModelFormatException">The file is not valid JSON.</exception>
    public static ChatTemplate FromTokenizerConfig(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Path.GetExtension(path).Equals(".gguf", StringComparison.OrdinalIgnoreCase) && File.Exists(path))
            return FromGguf(path);
        string file;
        if (Directory.Exists(path))
            file = Path.Combine(path, TokenizerConfigFileName);
        else if (Path.GetExtension(path).Equals(".json", StringComparison.OrdinalIgnoreCase)
            && !Path.GetFileName(path).Equals("config.json", StringComparison.OrdinalIgnoreCase))
            file = path; // tokenizer_config.json, or a copy of it under another name

        else
            file = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", TokenizerConfigFileName);
        file = Path.GetFullPath(file);
        if (!File.Exists(file))
            return Plain;
        // Checked before opening: an empty file is no JSON, and something that is not a regular file
        // (a FIFO reports length 0) would block the read.
        if (new FileInfo(file).Length == 0)
            throw new ModelFormatException($"{file} is empty.");

        string? template, bos, eos;
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(file));
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{file}: expected a JSON object.");
            template = ReadTemplate(root);
            bos = ReadToken(root, "bos_token");
            eos = ReadToken(root, "eos_token");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{file} is not valid JSON: {e.Message}", e);
        }
        if (string.IsNullOrEmpty(template))
            return Plain;
        return Recognize(template, bos, eos)
            ?? throw new NotSupportedException(
                $"The chat_template in {file} is not one of the supported families ({string.Join(", ", Names)}); choose one with ChatTemplate.FromName.");
    }

    /// <summary>
    /// The template a GGUF file carries (<c>tokenizer.chat_template</c>, with its BOS/EOS tokens' text from the vocabulary), or
    /// <see cref="Plain"/> when it has none; only the file's metadata is read.
    /// </summary>
    private static ChatTemplate FromGguf(string path)
    {
        GgufMetadata metadata;
        using (MappedFile file = MappedFile.Open(Path.GetFullPath(path)))
            metadata = GgufFormat.Read(file, metadataOnly: true).Metadata;
        string? template = metadata.GetString("tokenizer.chat_template");
        if (string.IsNullOrEmpty(template))
            return Plain;
        string[]? tokens = metadata.GetStringArray("tokenizer.ggml.tokens");
        string? Token(string key) => metadata.GetInteger(key) is long id && tokens is not null && id >= 0 && id < tokens.Length ? tokens[id] : null;
        return Recognize(template, Token("tokenizer.ggml.bos_token_id"), Token("tokenizer.ggml.eos_token_id"))
            ?? throw new NotSupportedException(
                $"The tokenizer.chat_template in {path} is not one of the supported families ({string.Join(", ", Names)}); choose one with ChatTemplate.FromName.");
    }

    /// <summary>The <c>chat_template</c>: a string, or a list of named templates of which the "default" one.</summary>
    private static string? ReadTemplate(JsonElement root)
    {
        if (!root.TryGetProperty("chat_template", out JsonElement value))
            return null;
        if (value.ValueKind == JsonValueKind.String)
            return value.GetString();
        if (value.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement item in value.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.Object
                    && item.TryGetProperty("name", out JsonElement name) && name.ValueKind == JsonValueKind.String && name.GetString() == "default"
                    && item.TryGetProperty("template", out JsonElement text) && text.ValueKind == JsonValueKind.String)
                {
                    return text.GetString();
                }
            }
        }
        return null;
    }

    /// <summary>A special token's text: a string, or an AddedToken object's <c>content</c>.</summary>
    private static string? ReadToken(JsonElement root, string key)
    {
        if (!root.TryGetProperty(key, out JsonElement value))
            return null;
        if (value.ValueKind == JsonValueKind.String)
            return value.GetString();
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String)
            return content.GetString();
        return null;
    }

    [GeneratedRegex(@"<\|im_start\|>system(?:\\n|\n)((?:(?!<\|im_end\|>)[^'""])+)<\|im_end\|>")]
    private static partial Regex DefaultSystemPromptPattern();

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>The messages as (role, text) pairs, checked for null.</summary>
    private protected static List<ChatMessage> Materialize(IEnumerable<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<ChatMessage>(messages);
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is null)
                throw new ArgumentException($"Message {i} is null.", nameof(messages));
        }
        return list;
    }

    /// <summary>Jinja's <c>trim</c> filter and Python's <c>str.strip()</c>.</summary>
    private protected static string Strip(string text) => text.Trim();

    /// <summary>Today's date as Llama 3.2's template writes it (<c>strftime("%d %b %Y")</c>).</summary>
    private protected static string Today() => DateTime.Now.ToString("dd MMM yyyy", CultureInfo.InvariantCulture);
}
