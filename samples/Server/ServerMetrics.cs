using System;
using System.Collections.Generic;
using System.Diagnostics.Metrics;

namespace Llama.Compiled.Server;

/// <summary>
/// The server's own instrument, on the Meter "Llama.Compiled.Server": requests by endpoint and HTTP status. The generation
/// metrics (queue length, active sequences, prompt and generated tokens, time to first token, generations by finish reason)
/// are the runtime's BatchedGenerator's, on the Meter "Llama.Compiled". Read both with
/// <c>dotnet-counters monitor --counters Llama.Compiled,Llama.Compiled.Server -n Server</c>, or scrape /metrics.
/// </summary>
public sealed class ServerMetrics : IDisposable
{
    public const string MeterName = "Llama.Compiled.Server";

    private readonly Meter _meter;
    private readonly Counter<long> _requests;

    public ServerMetrics(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(MeterName);
        _requests = _meter.CreateCounter<long>("llama_compiled.server.requests", "{request}", "HTTP requests answered, by endpoint and status (499: the client went away first).");
    }

    public void Request(string endpoint, int status) =>
        _requests.Add(1, new KeyValuePair<string, object?>("endpoint", endpoint), new KeyValuePair<string, object?>("http.response.status_code", status));

    public void Dispose() => _meter.Dispose();
}
