using System;

namespace Llama.Compiled;

/// <summary>
/// Where a lazy grammar starts (<see cref="GenerationOptions.GrammarTriggers"/>): text that, once the output contains it,
/// makes the output from there follow <see cref="GenerationOptions.Grammar"/> until the grammar is finished.
/// </summary>
/// <remarks>
/// Tool calls are the use: free text, then a call whose JSON must match the declared functions (Hermes/Qwen:
/// <c>new GrammarTrigger("&lt;tool_call&gt;\n")</c>; Llama 3.1: <c>new GrammarTrigger("{") { AtStart = true, IsGrammarText = true }</c>).
/// <see cref="ToolCallFormat.CallTriggers"/> has each tool format's.
/// </remarks>
public sealed record GrammarTrigger
{
    /// <summary>Creates a trigger on <paramref name="text"/>.</summary>
    /// <param name="text">The text that starts the grammar (matched as UTF-8 bytes, case-sensitively).</param>
    /// <exception cref="ArgumentException"><paramref name="text"/> is empty.</exception>
    public GrammarTrigger(string text)
    {
        ArgumentException.ThrowIfNullOrEmpty(text);
        Text = text;
    }

    /// <summary>The text that starts the grammar.</summary>
    public string Text { get; }

    /// <summary>
    /// Whether the trigger counts only at the start of the output (after leading whitespace), instead of anywhere in the
    /// free text. Default false.
    /// </summary>
    public bool AtStart { get; init; }

    /// <summary>
    /// Whether <see cref="Text"/> is the beginning of the grammar's text (a JSON object's <c>{</c>) rather than text before
    /// it (<c>&lt;tool_call&gt;\n</c>, after which the grammar's text begins). Default false.
    /// </summary>
    public bool IsGrammarText { get; init; }
}
