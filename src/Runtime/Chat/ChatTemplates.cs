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
        [BosToken, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"];

    /// <inheritdoc/>
    public override bool BosInText => true;

    /// <inheritdoc/>
    public override bool PrependBos => false;

    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        List<ChatMessage> list = Materialize(messages);
        var text = new StringBuilder();
        int start = 0;
        if (DatePreamble)
        {
            // 3.1/3.2 always open with the system turn, taking the first message if it is the system's.
            string system = "";
            if (list.Count > 0 && list[0].Role == ChatRole.System)
            {
                system = Strip(list[0].Text);
                start = 1;
            }
            text.Append(BosToken)
                .Append("<|start_header_id|>system<|end_header_id|>\n\n")
                .Append("Cutting Knowledge Date: December 2023\n")
                .Append("Today Date: ").Append(DateString ?? Today()).Append("\n\n")
                .Append(system)
                .Append("<|eot_id|>");
        }
        for (int i = start; i < list.Count; i++)
        {
            // Llama 3 puts BOS before the first message only (none at all for an empty conversation).
            if (i == 0 && !DatePreamble)
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
    public override IReadOnlyList<string> SpecialTokens => ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

    /// <inheritdoc/>
    public override bool BosInText => false;

    /// <inheritdoc/>
    public override bool PrependBos => false;

    /// <inheritdoc/>
    public override string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        List<ChatMessage> list = Materialize(messages);
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
