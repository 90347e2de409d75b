using System;
using System.Collections.Generic;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Llama.Compiled;

/// <summary>
/// How a chat model writes a function call: the text around the call's JSON object
/// (<c>{"name": …, "parameters"/"arguments": {…}}</c>), and a <see cref="ToolCallParser"/> that finds calls in the
/// generated text. A <see cref="ChatTemplate"/> that renders tools has one (<see cref="ChatTemplate.ToolCallFormat"/>).
/// </summary>
/// <remarks>
/// <see cref="GetCallJsonSchema"/> is the JSON schema a call must satisfy; a grammar made from it
/// constrains sampling to valid calls from where the call's JSON starts (after <see cref="CallPrefix"/>).
/// </remarks>
public abstract class ToolCallFormat
{
    private protected ToolCallFormat()
    {
    }

    /// <summary>
    /// Llama 3.1+'s custom tool calls: the assistant's whole message is <c>{"name": …, "parameters": {…}}</c>, possibly after
    /// <c>&lt;|python_tag|&gt;</c>, ended by <c>&lt;|eot_id|&gt;</c> (or <c>&lt;|eom_id|&gt;</c>). One call per message.
    /// </summary>
    public static ToolCallFormat Llama3Json { get; } = new Llama3JsonToolCallFormat();

    /// <summary>
    /// Hermes-style calls (Qwen2.5, Qwen3): <c>&lt;tool_call&gt;\n{"name": …, "arguments": {…}}\n&lt;/tool_call&gt;</c>
    /// blocks, several per message, possibly after some text.
    /// </summary>
    public static ToolCallFormat Hermes { get; } = new HermesToolCallFormat();

    /// <summary>Short name: <c>llama3-json</c> or <c>hermes</c>.</summary>
    public abstract string Name { get; }

    /// <summary>The text before a call's JSON object (<c>&lt;tool_call&gt;\n</c>; nothing for Llama 3.1).</summary>
    public abstract string CallPrefix { get; }

    /// <summary>The text after a call's JSON object (<c>\n&lt;/tool_call&gt;</c>; nothing for Llama 3.1).</summary>
    public abstract string CallSuffix { get; }

    /// <summary>The member of the call's JSON object that holds the arguments: <c>parameters</c> (Llama) or <c>arguments</c> (Hermes).</summary>
    public abstract string ArgumentsPropertyName { get; }

    /// <summary>Whether a message may hold several calls (and text before them).</summary>
    public abstract bool AllowsSeveralCalls { get; }

    /// <summary>
    /// Where a call's JSON starts in an answer that may also be text, for a lazy grammar made from
    /// <see cref="GetCallJsonSchema"/> (<see cref="GenerationOptions.GrammarTriggers"/>): after <c>&lt;tool_call&gt;\n</c>
    /// anywhere (Hermes); at a <c>{</c> that starts the message, or after a <c>&lt;|python_tag|&gt;</c> that does (Llama 3.1).
    /// </summary>
    public abstract IReadOnlyList<GrammarTrigger> CallTriggers { get; }

    /// <summary>A parser for one answer of the model.</summary>
    public abstract ToolCallParser CreateParser();

    /// <summary>
    /// The start of a call, for a prompt that makes the model write one (<see cref="ChatToolMode.RequireAny"/>):
    /// <see cref="CallPrefix"/> and <c>{"name": "</c>, or with <paramref name="functionName"/> also the name and the
    /// arguments' key, so that the model writes the arguments next.
    /// </summary>
    public string GetOpening(string? functionName = null)
    {
        var text = new StringBuilder(CallPrefix).Append("{\"name\": \"");
        if (functionName is not null)
            text.Append(functionName).Append("\", \"").Append(ArgumentsPropertyName).Append("\": ");
        return text.ToString();
    }

    /// <summary>
    /// The JSON schema of one call's JSON object to one of <paramref name="tools"/> (or to <paramref name="functionName"/>):
    /// <c>{"anyOf": [{"type": "object", "properties": {"name": {"const": name}, "parameters": schema}, "required": […],
    /// "additionalProperties": false}, …]}</c>.
    /// </summary>
    public JsonElement GetCallJsonSchema(IEnumerable<AIFunctionDeclaration> tools, string? functionName = null)
    {
        ArgumentNullException.ThrowIfNull(tools);
        return ChatToolJson.Build(writer =>
        {
            writer.WriteStartObject();
            writer.WritePropertyName("anyOf");
            writer.WriteStartArray();
            foreach (AIFunctionDeclaration tool in tools)
            {
                if (functionName is not null && tool.Name != functionName)
                    continue;
                writer.WriteStartObject();
                writer.WriteString("type", "object");
                writer.WritePropertyName("properties");
                writer.WriteStartObject();
                writer.WritePropertyName("name");
                writer.WriteStartObject();
                writer.WriteString("const", tool.Name);
                writer.WriteEndObject();
                writer.WritePropertyName(ArgumentsPropertyName);
                ChatToolJson.WriteParameters(writer, tool);
                writer.WriteEndObject();
                writer.WritePropertyName("required");
                writer.WriteStartArray();
                writer.WriteStringValue("name");
                writer.WriteStringValue(ArgumentsPropertyName);
                writer.WriteEndArray();
                writer.WriteBoolean("additionalProperties", false);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        });
    }

    /// <summary>
    /// A call from the text of its JSON object: an object with a non-empty string <c>name</c> and the arguments as an
    /// object under <see cref="ArgumentsPropertyName"/> (the other family's key, or a string holding a JSON object, is
    /// also taken; no arguments at all is an empty set). <see langword="false"/> for anything else.
    /// </summary>
    public bool TryParseCall(string json, out string name, out Dictionary<string, object?> arguments)
    {
        ArgumentNullException.ThrowIfNull(json);
        name = "";
        arguments = [];
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException)
        {
            return false;
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("name", out JsonElement nameElement) || nameElement.ValueKind != JsonValueKind.String
                || string.IsNullOrEmpty(nameElement.GetString()))
            {
                return false;
            }
            string other = ArgumentsPropertyName == "arguments" ? "parameters" : "arguments";
            if (!root.TryGetProperty(ArgumentsPropertyName, out JsonElement args) && !root.TryGetProperty(other, out args))
                args = default;
            if (args.ValueKind == JsonValueKind.String)
            {
                // Some models write the arguments as a string of JSON, as OpenAI's API carries them.
                try
                {
                    using JsonDocument inner = JsonDocument.Parse(args.GetString()!);
                    if (inner.RootElement.ValueKind != JsonValueKind.Object)
                        return false;
                    foreach (JsonProperty property in inner.RootElement.EnumerateObject())
                        arguments[property.Name] = property.Value.Clone();
                }
                catch (JsonException)
                {
                    return false;
                }
            }
            else if (args.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty property in args.EnumerateObject())
                    arguments[property.Name] = property.Value.Clone();
            }
            else if (args.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
            {
                return false;
            }
            name = nameElement.GetString()!;
            return true;
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Name;

    private sealed class Llama3JsonToolCallFormat : ToolCallFormat
    {
        public override string Name => "llama3-json";
        public override string CallPrefix => "";
        public override string CallSuffix => "";
        public override string ArgumentsPropertyName => "parameters";
        public override bool AllowsSeveralCalls => false;
        public override IReadOnlyList<GrammarTrigger> CallTriggers { get; } =
        [
            new GrammarTrigger("{") { AtStart = true, IsGrammarText = true },
            new GrammarTrigger(Llama3JsonToolCallParser.PythonTag) { AtStart = true },
        ];
        public override ToolCallParser CreateParser() => new Llama3JsonToolCallParser(this);
    }

    private sealed class HermesToolCallFormat : ToolCallFormat
    {
        public override string Name => "hermes";
        public override string CallPrefix => "<tool_call>\n";
        public override string CallSuffix => "\n</tool_call>";
        public override string ArgumentsPropertyName => "arguments";
        public override bool AllowsSeveralCalls => true;
        public override IReadOnlyList<GrammarTrigger> CallTriggers { get; } = [new GrammarTrigger("<tool_call>\n")];
        public override ToolCallParser CreateParser() => new HermesToolCallParser(this);
    }
}

/// <summary>
/// Finds function calls in a model's answer as it streams. Fed the generated text piece by piece, it passes on the
/// text that is certainly not part of a call (<see cref="TextContent"/>) and each call once its text is complete
/// (<see cref="FunctionCallContent"/>), holding back what may still become a call. A call whose JSON is malformed
/// (or names no function) is passed on as the text it was.
/// </summary>
/// <remarks>
/// Whitespace between text and a call, and between calls, is dropped: rendered back into the prompt, the message is then
/// what the model wrote. An answer without calls comes out unchanged.
/// </remarks>
public abstract class ToolCallParser
{
    private readonly StringBuilder _heldWhitespace = new();
    private bool _afterCall;

    private protected ToolCallParser(ToolCallFormat format) => Format = format;

    /// <summary>The format the parser recognises.</summary>
    public ToolCallFormat Format { get; }

    /// <summary>
    /// True while the text since the last output may be (or is) a call being written: the point where sampling can
    /// be constrained to the call's schema (<see cref="ToolCallFormat.GetCallJsonSchema"/>).
    /// </summary>
    public abstract bool InCall { get; }

    /// <summary>How many calls were recognised so far.</summary>
    public int CallCount { get; private set; }

    /// <summary>Feeds the next piece of the answer; what is recognised is added to <paramref name="output"/>, in order.</summary>
    public abstract void Append(string text, ICollection<AIContent> output);

    /// <summary>The answer ended: what was held back is added to <paramref name="output"/> as a call or as text.</summary>
    public abstract void Complete(ICollection<AIContent> output);

    /// <summary>A new call id (<c>call_</c> and 24 hexadecimal digits).</summary>
    protected virtual string NewCallId() => "call_" + Guid.NewGuid().ToString("N")[..24];

    /// <summary>Adds text; trailing whitespace waits for what follows it.</summary>
    private protected void EmitText(string text, ICollection<AIContent> output)
    {
        if (text.Length == 0)
            return;
        string whole = _heldWhitespace.Length > 0 ? _heldWhitespace + text : text;
        _heldWhitespace.Clear();
        if (_afterCall)
        {
            whole = whole.TrimStart();
            if (whole.Length == 0)
                return;
            _afterCall = false;
        }
        int end = whole.Length;
        while (end > 0 && char.IsWhiteSpace(whole[end - 1]))
            end--;
        if (end > 0)
            output.Add(new TextContent(whole[..end]));
        _heldWhitespace.Append(whole, end, whole.Length - end);
    }

    /// <summary>Adds a call; the whitespace before it is dropped.</summary>
    private protected void EmitCall(string name, Dictionary<string, object?> arguments, ICollection<AIContent> output)
    {
        _heldWhitespace.Clear();
        _afterCall = true;
        CallCount++;
        output.Add(new FunctionCallContent(NewCallId(), name, arguments));
    }

    /// <summary>At the end: held whitespace is kept in an answer without calls.</summary>
    private protected void FlushWhitespace(ICollection<AIContent> output)
    {
        if (_heldWhitespace.Length > 0 && CallCount == 0)
            output.Add(new TextContent(_heldWhitespace.ToString()));
        _heldWhitespace.Clear();
    }
}

/// <summary>Llama 3.1+: a message that starts with <c>{</c> or <c>&lt;|python_tag|&gt;</c> is held back and parsed whole.</summary>
internal sealed class Llama3JsonToolCallParser(ToolCallFormat format) : ToolCallParser(format)
{
    public const string PythonTag = "<|python_tag|>";

    private enum State { Start, Text, Call }

    private readonly StringBuilder _buffer = new();
    private State _state;

    public override bool InCall => _state == State.Call;

    public override void Append(string text, ICollection<AIContent> output)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(output);
        if (_state == State.Text)
        {
            EmitText(text, output);
            return;
        }
        _buffer.Append(text);
        if (_state == State.Call)
            return;
        string start = _buffer.ToString().TrimStart();
        if (start.Length == 0)
            return;
        if (start[0] == '{' || start.StartsWith(PythonTag, StringComparison.Ordinal))
        {
            _state = State.Call;
        }
        else if (!PythonTag.StartsWith(start, StringComparison.Ordinal))
        {
            _state = State.Text;
            EmitText(_buffer.ToString(), output);
            _buffer.Clear();
        }
    }

    public override void Complete(ICollection<AIContent> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (_buffer.Length > 0)
        {
            string raw = _buffer.ToString();
            _buffer.Clear();
            string json = raw.TrimStart();
            if (json.StartsWith(PythonTag, StringComparison.Ordinal))
                json = json[PythonTag.Length..];
            if (_state == State.Call && Format.TryParseCall(json.Trim(), out string name, out Dictionary<string, object?> arguments))
                EmitCall(name, arguments, output);
            else
                EmitText(raw, output);
        }
        _state = State.Text;
        FlushWhitespace(output);
    }
}

/// <summary>Hermes (Qwen): <c>&lt;tool_call&gt;…&lt;/tool_call&gt;</c> blocks anywhere in the text.</summary>
internal sealed class HermesToolCallParser(ToolCallFormat format) : ToolCallParser(format)
{
    public const string Open = "<tool_call>";
    public const string Close = "</tool_call>";

    private readonly StringBuilder _buffer = new();
    private bool _inCall;

    public override bool InCall => _inCall;

    public override void Append(string text, ICollection<AIContent> output)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(output);
        _buffer.Append(text);
        Process(output, final: false);
    }

    public override void Complete(ICollection<AIContent> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        Process(output, final: true);
        FlushWhitespace(output);
    }

    private void Process(ICollection<AIContent> output, bool final)
    {
        while (true)
        {
            string buffered = _buffer.ToString();
            if (!_inCall)
            {
                int open = buffered.IndexOf(Open, StringComparison.Ordinal);
                if (open >= 0)
                {
                    EmitText(buffered[..open], output);
                    _buffer.Remove(0, open + Open.Length);
                    _inCall = true;
                    continue;
                }
                // Hold back an end that may be the start of "<tool_call>".
                int keep = final ? 0 : PartialMatch(buffered, Open);
                EmitText(buffered[..^keep], output);
                _buffer.Remove(0, buffered.Length - keep);
                return;
            }
            int close = buffered.IndexOf(Close, StringComparison.Ordinal);
            if (close < 0 && !final)
                return;
            // An unclosed call at the end (the answer ran out, or a constrained call stopped after its JSON) is parsed as it is.
            string body = close >= 0 ? buffered[..close] : buffered;
            if (Format.TryParseCall(body.Trim(), out string name, out Dictionary<string, object?> arguments))
                EmitCall(name, arguments, output);
            else
                EmitText(Open + body + (close >= 0 ? Close : ""), output);
            _buffer.Remove(0, close >= 0 ? close + Close.Length : buffered.Length);
            _inCall = false;
            if (_buffer.Length == 0 && final)
                return;
        }
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that is a proper start of <paramref name="marker"/>.</summary>
    private static int PartialMatch(string text, string marker)
    {
        for (int length = Math.Min(marker.Length - 1, text.Length); length > 0; length--)
        {
            if (string.CompareOrdinal(text, text.Length - length, marker, 0, length) == 0)
                return length;
        }
        return 0;
    }
}
