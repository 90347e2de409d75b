using System;
using System.Collections.Generic;
using System.Text;
using Microsoft.Extensions.AI;

namespace Llama.Compiled;

/// <summary>
/// Llama 2 chat (meta-llama/Llama-2-*-chat-hf):
/// <c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\n{system}\n&lt;&lt;/SYS&gt;&gt;\n\n{user} [/INST] {assistant} &lt;/s&gt;&lt;s&gt;[INST] {user} [/INST]</c>.
/// An optional system message first, then user and assistant messages alternating, starting with the
/// user; contents are stripped of surrounding whitespace. There is no generation prompt: the model
/// answers after <c>[/INST]</c>.
/// </summary>
public sealed record Llama2ChatTemplate : ChatTemplate
{
    /// <summary>The BOS token's text. Default <c>&lt;s&gt;</c>.</summary>
    public string BosToken { get; init; } = "<s>";

    /// <summary>The EOS token's text. Default <c>&lt;/s&gt;</c>.</summary>
    public string EosToken { get; init; } = "</s>";

    /// <inheritdoc/>
    public override string Name => "llama2";

    /// <inheritdoc/>
    public override IReadOnlyList<string> StopSequences => [EosToken];

    /// <inheritdoc/>
    public override IReadOnlyList<string> SpecialTokens => [BosToken, EosToken];

    /// <inheritdoc/>
    public override bool BosInText => true;

    /// <inheritdoc/>
    public override bool PrependBos => false;

    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        List<ChatMessage> list = Materialize(messages);
        string? system = null;
        int start = 0;
        if (list.Count > 0 && list[0].Role == ChatRole.System)
        {
            system = list[0].Text;
            start = 1;
        }
        var text = new StringBuilder();
        for (int i = start; i < list.Count; i++)
        {
            ChatMessage message = list[i];
            bool expectUser = (i - start) % 2 == 0;
            if ((message.Role == ChatRole.User) != expectUser)
                throw new ArgumentException("Conversation roles must alternate user/assistant/user/assistant/... (after an optional system message).", nameof(messages));
            string content = message.Text;
            if (i == start && system is not null)
                content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
            if (message.Role == ChatRole.User)
                text.Append(BosToken).Append("[INST] ").Append(Strip(content)).Append(" [/INST]");
            else if (message.Role == ChatRole.Assistant)
                text.Append(' ').Append(Strip(content)).Append(' ').Append(EosToken);
        }
        return text.ToString();
    }
}

/// <summary>
/// Llama 3 instruct (Meta-Llama-3-*-Instruct):
/// <c>&lt;|begin_of_text|&gt;&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content}&lt;|eot_id|&gt;…&lt;|start_header_id|&gt;assistant&lt;|end_header_id|&gt;\n\n</c>,
/// contents stripped. With <see cref="DatePreamble"/> it is Llama 3.1/3.2's: the first turn is always
/// a system turn that starts with <c>Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n</c>.
/// </summary>
public sealed record Llama3ChatTemplate : ChatTemplate
{
    /// <summary>The date Llama 3.1's template writes when it is not given one.</summary>
    public const string DefaultDateString = "26 Jul 2024";

    /// <summary>The BOS token's text. Default <c>&lt;|begin_of_text|&gt;</c>.</summary>
    public string BosToken { get; init; } = "<|begin_of_text|>";

    /// <summary>Whether the conversation opens with Llama 3.1/3.2's system turn stating the knowledge cutoff and today's date. Default false (Llama 3).</summary>
    public bool DatePreamble { get; init; }

    /// <summary>
    /// The "Today Date" of <see cref="DatePreamble"/>, such as <c>26 Jul 2024</c>; <see langword="null"/>
    /// (Llama 3.2's behaviour) writes the current date. Default <see cref="DefaultDateString"/>.
    /// </summary>
    public string? DateString { get; init; } = DefaultDateString;

    /// <inheritdoc/>
    public override string Name => DatePreamble ? "llama3.1" : "llama3";

    /// <inheritdoc/>
    public override IReadOnlyList<string> StopSequences => ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"];

    /// <inheritdoc/>
    public override IReadOnlyList<string> SpecialTokens =>
        [BosToken, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|python_tag|>"];

    /// <inheritdoc/>
    public override bool BosInText => true;

    /// <inheritdoc/>
    public override bool PrependBos => false;

    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true) =>
        Render(messages, tools: null, addGenerationPrompt);

    /// <summary>
    /// Whether Llama 3.1+'s template puts the tools into the first user message (its <c>tools_in_user_message</c>,
    /// true by default) rather than into the system message.
    /// </summary>
    public bool ToolsInUserMessage { get; init; } = true;

    /// <summary><see cref="ToolCallFormat.Llama3Json"/> for Llama 3.1+ (<see cref="DatePreamble"/>); Llama 3 has no tool format.</summary>
    public override ToolCallFormat? ToolCallFormat => DatePreamble ? ToolCallFormat.Llama3Json : null;

    /// <summary>
    /// Renders the conversation; with <see cref="DatePreamble"/> (Llama 3.1+) also tools, calls and results as its template
    /// does: <c>Environment: ipython</c> in the system turn, the tools (JSON indented by 4) with the instructions to call them in
    /// the first user message (or in the system message, <see cref="ToolsInUserMessage"/>), an assistant's call as
    /// <c>{"name": …, "parameters": …}</c>, and a result in an <c>ipython</c> turn as a JSON string.
    /// </summary>
    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, IReadOnlyList<AIFunctionDeclaration>? tools, bool addGenerationPrompt = true)
    {
        if (!DatePreamble)
        {
            ThrowIfToolsUnsupported(tools);
            return RenderLlama3(Materialize(messages), addGenerationPrompt);
        }
        List<TemplateMessage> list = TemplateMessage.From(messages);
        bool withTools = tools is { Count: > 0 };
        var text = new StringBuilder();
        int start = 0;
        // 3.1/3.2 always open with the system turn, taking the first message if it is the system's.
        string system = "";
        if (list.Count > 0 && list[0].Role == "system")
        {
            system = Strip(list[0].Content);
            start = 1;
        }
        text.Append(BosToken).Append("<|start_header_id|>system<|end_header_id|>\n\n");
        if (withTools)
            text.Append("Environment: ipython\n");
        text.Append("Cutting Knowledge Date: December 2023\n")
            .Append("Today Date: ").Append(DateString ?? Today()).Append("\n\n");
        if (withTools && !ToolsInUserMessage)
        {
            text.Append("You have access to the following functions. To call a function, please respond with JSON for a function call.")
                .Append(CallFormatInstruction);
            AppendTools(text, tools!);
        }
        text.Append(system).Append("<|eot_id|>");
        if (withTools && ToolsInUserMessage)
        {
            if (start >= list.Count)
                throw new ArgumentException("Cannot put tools in the first user message when there's no first user message!", nameof(messages));
            string firstUserMessage = Strip(list[start].Content);
            start++;
            text.Append("<|start_header_id|>user<|end_header_id|>\n\n")
                .Append("Given the following functions, please respond with a JSON for a function call ")
                .Append("with its proper arguments that best answers the given prompt.\n\n")
                .Append(CallFormatInstruction);
            AppendTools(text, tools!);
            text.Append(firstUserMessage).Append("<|eot_id|>");
        }
        for (int i = start; i < list.Count; i++)
        {
            TemplateMessage message = list[i];
            if (message.HasToolCalls)
            {
                if (message.ToolCalls.Count != 1)
                    throw new ArgumentException("This model only supports single tool-calls at once!", nameof(messages));
                FunctionCallContent call = message.ToolCalls[0];
                text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n")
                    .Append("{\"name\": \"").Append(call.Name).Append("\", ")
                    .Append("\"parameters\": ");
                ChatToolJson.Write(text, ChatToolJson.ArgumentsElement(call.Arguments));
                text.Append('}').Append("<|eot_id|>");
            }
            else if (message.Role is "tool" or "ipython")
            {
                // The template writes a string content through tojson (a string is iterable to Jinja): quoted and escaped.
                text.Append("<|start_header_id|>ipython<|end_header_id|>\n\n");
                ChatToolJson.WriteString(text, message.Content);
                text.Append("<|eot_id|>");
            }
            else
            {
                text.Append("<|start_header_id|>").Append(message.Role).Append("<|end_header_id|>\n\n")
                    .Append(Strip(message.Content))
                    .Append("<|eot_id|>");
            }
        }
        if (addGenerationPrompt)
            text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
        return text.ToString();
    }

    private const string CallFormatInstruction =
        "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}."
        + "Do not use variables.\n\n";

    private static void AppendTools(StringBuilder text, IReadOnlyList<AIFunctionDeclaration> tools)
    {
        foreach (AIFunctionDeclaration tool in tools)
        {
            ChatToolJson.Write(text, ChatToolJson.ToolElement(tool), indent: 4);
            text.Append("\n\n");
        }
    }

    /// <summary>Llama 3 (without the date preamble): every message a turn, BOS before the first.</summary>
    private string RenderLlama3(List<ChatMessage> list, bool addGenerationPrompt)
    {
        var text = new StringBuilder();
        for (int i = 0; i < list.Count; i++)
        {
            // Llama 3 puts BOS before the first message only (none at all for an empty conversation).
            if (i == 0)
                text.Append(BosToken);
            text.Append("<|start_header_id|>").Append(list[i].Role.Value).Append("<|end_header_id|>\n\n")
                .Append(Strip(list[i].Text))
                .Append("<|eot_id|>");
        }
        if (addGenerationPrompt)
            text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
        return text.ToString();
    }
}

/// <summary>
/// ChatML (Qwen, SmolLM2): <c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c> per message and
/// <c>&lt;|im_start|&gt;assistant\n</c> to prompt an answer; contents as they are. When the conversation
/// does not start with a system message, <see cref="DefaultSystemPrompt"/> (if any) is inserted.
/// </summary>
public sealed record ChatMLChatTemplate : ChatTemplate
{
    /// <summary>
    /// The system message the model's template inserts when the conversation has none: Qwen2.5's
    /// "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", SmolLM2's "You are a
    /// helpful AI assistant named SmolLM, trained by Hugging Face". Default none.
    /// </summary>
    public string? DefaultSystemPrompt { get; init; }

    /// <inheritdoc/>
    public override string Name => "chatml";

    /// <inheritdoc/>
    public override IReadOnlyList<string> StopSequences => ["<|im_end|>", "<|endoftext|>"];

    /// <inheritdoc/>
    public override IReadOnlyList<string> SpecialTokens =>
        HermesToolCalls ? ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>"] : ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

    /// <inheritdoc/>
    public override bool BosInText => false;

    /// <inheritdoc/>
    public override bool PrependBos => false;

    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true) =>
        Render(messages, tools: null, addGenerationPrompt);

    /// <summary>Qwen2.5's default system prompt.</summary>
    public const string Qwen25SystemPrompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

    /// <summary>
    /// Whether the template is Qwen2.5's or Qwen3's, with Hermes-style tool calling (<see cref="ToolCallFormat.Hermes"/>):
    /// the tools in the system message inside <c>&lt;tools&gt;&lt;/tools&gt;</c>, calls as <c>&lt;tool_call&gt;</c> blocks, results as
    /// <c>&lt;tool_response&gt;</c> blocks in a user turn. Default false (SmolLM2's and plain ChatML have no tool format).
    /// </summary>
    public bool HermesToolCalls { get; init; }

    /// <summary>
    /// Whether the template is Qwen3's, whose assistant messages may hold reasoning (<c>&lt;think&gt;…&lt;/think&gt;</c>): it is
    /// cut out of messages before the last user query, and written as <c>&lt;think&gt;\n…\n&lt;/think&gt;\n\n</c> in those after it.
    /// Default false. (Only with <see cref="HermesToolCalls"/>.)
    /// </summary>
    public bool ThinkBlocks { get; init; }

    /// <inheritdoc/>
    public override ToolCallFormat? ToolCallFormat => HermesToolCalls ? ToolCallFormat.Hermes : null;

    /// <summary>
    /// Renders the conversation; with <see cref="HermesToolCalls"/> also tools, calls and results as Qwen2.5's and Qwen3's
    /// templates do (Qwen3's reasoning — <c>&lt;think&gt;</c> blocks in assistant messages — is not handled).
    /// </summary>
    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, IReadOnlyList<AIFunctionDeclaration>? tools, bool addGenerationPrompt = true)
    {
        if (!HermesToolCalls)
        {
            ThrowIfToolsUnsupported(tools);
            return RenderChatML(Materialize(messages), addGenerationPrompt);
        }
        List<TemplateMessage> list = TemplateMessage.From(messages);
        var text = new StringBuilder();
        bool systemFirst = list.Count > 0 && list[0].Role == "system";
        if (tools is { Count: > 0 })
        {
            text.Append("<|im_start|>system\n");
            string? system = systemFirst ? list[0].Content : DefaultSystemPrompt;
            if (system is not null)
                text.Append(system).Append("\n\n");
            text.Append("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n")
                .Append("You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
            foreach (AIFunctionDeclaration tool in tools)
            {
                text.Append('\n');
                ChatToolJson.Write(text, ChatToolJson.ToolElement(tool));
            }
            text.Append("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n")
                .Append("<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
        }
        else if (systemFirst)
        {
            AppendTurn(text, "system", list[0].Content);
        }
        else if (DefaultSystemPrompt is not null)
        {
            AppendTurn(text, "system", DefaultSystemPrompt);
        }
        // Qwen3: the index of the last user query (a user message that is not a hand-written tool response).
        int lastQuery = list.Count - 1;
        for (int i = list.Count - 1; i >= 0; i--)
        {
            string content = list[i].Content;
            if (list[i].Role == "user" && !(content.StartsWith("<tool_response>", StringComparison.Ordinal) && content.EndsWith("</tool_response>", StringComparison.Ordinal)))
            {
                lastQuery = i;
                break;
            }
        }
        for (int i = 0; i < list.Count; i++)
        {
            TemplateMessage message = list[i];
            if (message.Role == "user" || (message.Role == "system" && i > 0))
            {
                AppendTurn(text, message.Role, message.Content);
            }
            else if (message.Role == "assistant")
            {
                string content = message.Content;
                text.Append("<|im_start|>assistant\n");
                if (ThinkBlocks)
                {
                    // Qwen3: the reasoning is cut out of the content; kept (re-formatted) only after the last user query.
                    string reasoning = "";
                    int end = content.IndexOf("</think>", StringComparison.Ordinal);
                    if (end >= 0)
                    {
                        reasoning = content[..end].TrimEnd('\n');
                        int start = reasoning.LastIndexOf("<think>", StringComparison.Ordinal);
                        reasoning = (start >= 0 ? reasoning[(start + "<think>".Length)..] : reasoning).TrimStart('\n');
                        content = content[(content.LastIndexOf("</think>", StringComparison.Ordinal) + "</think>".Length)..].TrimStart('\n');
                    }
                    if (i > lastQuery && (i == list.Count - 1 || reasoning.Length > 0))
                        text.Append("<think>\n").Append(reasoning.Trim('\n')).Append("\n</think>\n\n").Append(content.TrimStart('\n'));
                    else
                        text.Append(content);
                }
                else
                {
                    text.Append(content);
                }
                for (int j = 0; j < message.ToolCalls.Count; j++)
                {
                    FunctionCallContent call = message.ToolCalls[j];
                    if (j > 0 || content.Length > 0)
                        text.Append('\n');
                    text.Append("<tool_call>\n{\"name\": \"").Append(call.Name).Append("\", \"arguments\": ");
                    ChatToolJson.Write(text, ChatToolJson.ArgumentsElement(call.Arguments));
                    text.Append("}\n</tool_call>");
                }
                text.Append("<|im_end|>\n");
            }
            else if (message.Role == "tool")
            {
                // Consecutive results share one user turn.
                if (i == 0 || list[i - 1].Role != "tool")
                    text.Append("<|im_start|>user");
                text.Append("\n<tool_response>\n").Append(message.Content).Append("\n</tool_response>");
                if (i == list.Count - 1 || list[i + 1].Role != "tool")
                    text.Append("<|im_end|>\n");
            }
            // Qwen's templates leave out messages of other roles.
        }
        if (addGenerationPrompt)
            text.Append("<|im_start|>assistant\n");
        return text.ToString();
    }

    /// <summary>Plain ChatML: every message a turn.</summary>
    private string RenderChatML(List<ChatMessage> list, bool addGenerationPrompt)
    {
        var text = new StringBuilder();
        if (DefaultSystemPrompt is not null && (list.Count == 0 || list[0].Role != ChatRole.System))
            AppendTurn(text, "system", DefaultSystemPrompt);
        foreach (ChatMessage message in list)
            AppendTurn(text, message.Role.Value, message.Text);
        if (addGenerationPrompt)
            text.Append("<|im_start|>assistant\n");
        return text.ToString();
    }

    private static void AppendTurn(StringBuilder text, string role, string content) =>
        text.Append("<|im_start|>").Append(role).Append('\n').Append(content).Append("<|im_end|>\n");
}

/// <summary>
/// Zephyr (TinyLlama-1.1B-Chat): <c>&lt;|system|&gt;\n{system}&lt;/s&gt;\n&lt;|user|&gt;\n{user}&lt;/s&gt;\n&lt;|assistant|&gt;\n</c>;
/// contents as they are, messages of other roles left out. The markers are plain text; only
/// <c>&lt;/s&gt;</c> is a special token. The model's BOS goes first.
/// </summary>
public sealed record ZephyrChatTemplate : ChatTemplate
{
    /// <summary>The EOS token's text that ends every message. Default <c>&lt;/s&gt;</c>.</summary>
    public string EosToken { get; init; } = "</s>";

    /// <inheritdoc/>
    public override string Name => "zephyr";

    /// <inheritdoc/>
    public override IReadOnlyList<string> StopSequences => [EosToken];

    /// <inheritdoc/>
    public override IReadOnlyList<string> SpecialTokens => [EosToken];

    /// <inheritdoc/>
    public override bool BosInText => false;

    /// <inheritdoc/>
    public override bool PrependBos => true;

    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        List<ChatMessage> list = Materialize(messages);
        var text = new StringBuilder();
        foreach (ChatMessage message in list)
        {
            string? marker = message.Role == ChatRole.User ? "<|user|>"
                : message.Role == ChatRole.System ? "<|system|>"
                : message.Role == ChatRole.Assistant ? "<|assistant|>"
                : null;
            if (marker is not null)
                text.Append(marker).Append('\n').Append(message.Text).Append(EosToken).Append('\n');
        }
        // The template adds the prompt inside its loop, after the last message: never for no messages.
        if (addGenerationPrompt && list.Count > 0)
            text.Append("<|assistant|>\n");
        return text.ToString();
    }
}

/// <summary>
/// A plain-text template for models trained without a chat format (stories260K, base models):
/// <c>{system}\n\nUser: {user}\nAssistant: {assistant}\nUser: {user}\nAssistant:</c>. The model's BOS
/// goes first; an answer ends at <c>\nUser:</c> (or the model's EOS).
/// </summary>
public sealed record PlainChatTemplate : ChatTemplate
{
    /// <summary>The label of user turns. Default <c>User</c>.</summary>
    public string UserLabel { get; init; } = "User";

    /// <summary>The label of assistant turns. Default <c>Assistant</c>.</summary>
    public string AssistantLabel { get; init; } = "Assistant";

    /// <inheritdoc/>
    public override string Name => "plain";

    /// <inheritdoc/>
    public override IReadOnlyList<string> StopSequences => ["\n" + UserLabel + ":"];

    /// <inheritdoc/>
    public override IReadOnlyList<string> SpecialTokens => [];

    /// <inheritdoc/>
    public override bool BosInText => false;

    /// <inheritdoc/>
    public override bool PrependBos => true;

    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        List<ChatMessage> list = Materialize(messages);
        var text = new StringBuilder();
        foreach (ChatMessage message in list)
        {
            string content = Strip(message.Text);
            if (message.Role == ChatRole.System)
                text.Append(content).Append("\n\n");
            else if (message.Role == ChatRole.User)
                text.Append(UserLabel).Append(": ").Append(content).Append('\n');
            else if (message.Role == ChatRole.Assistant)
                text.Append(AssistantLabel).Append(": ").Append(content).Append('\n');
        }
        if (addGenerationPrompt)
            text.Append(AssistantLabel).Append(':');
        return text.ToString();
    }
}
